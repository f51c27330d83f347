package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"teal.dev/teal"
)

// Teardown drops a colour's copy and everything replicating into or out of it: its
// subscriptions (disabled, detached from their slot, dropped), their slots on the sending
// server (dropped explicitly: a slot left behind retains WAL without limit), the
// publications they read if nothing else does, the subscriptions elsewhere that read from
// it, and the database itself. It never touches a production database, and it is idempotent.
func (d *Database) Teardown(ctx context.Context, env *teal.DBEnv) error {
	if env == nil {
		return nil
	}
	if d.shared() {
		return d.teardownShared(ctx, env)
	}
	if env.Production {
		return teal.Errorf(teal.ErrRefused, "the production database is never dropped; retire the colour instead",
			"teardown %s: it is the production database", env.Name)
	}
	if err := d.dropCopy(ctx, env.Server, env.Name); err != nil {
		return fmt.Errorf("teardown %s: %w", env.Name, err)
	}
	d.log().Info("copy torn down", "app", d.app, "database", env.Name, "server", env.Server)
	return nil
}

// Retire finishes a release once the old colour is gone: it drops the replication between
// the two databases (the reverse subscription on old's database, its slot on live's server,
// live's publication, and any forward leftover), then applies live's held-back migrations
// (migrate UpTo live.HeldBack: the contract steps that had to wait until nothing old reads
// the database, and until no replication carries them to old; live.HeldBack is cleared for
// the caller to persist), then drops old's database — unless it is the production database,
// which is never dropped: then old's role is frozen and loses every privilege on it.
// Idempotent.
func (d *Database) Retire(ctx context.Context, live, old *teal.DBEnv) error {
	if live == nil || old == nil {
		return errors.New("retire: live and old databases are both needed")
	}
	lc, err := d.colorOf(live)
	if err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	oc, err := d.colorOf(old)
	if err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	if lc == oc {
		return fmt.Errorf("retire: %s and %s are both %s's", live.Name, old.Name, lc)
	}
	if sameDatabase(live, old) {
		return d.retireShared(ctx, live, old)
	}
	liveSrv, err := d.serverOf(live.Server)
	if err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	oldSrv, err := d.serverOf(old.Server)
	if err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	// The reverse direction first (it is the one running), then the forward one.
	for _, r := range []struct {
		sendSrv, recvSrv server
		sendDB, recvDB   string
		from, to         teal.Color
	}{
		{liveSrv, oldSrv, live.Name, old.Name, lc, oc},
		{oldSrv, liveSrv, old.Name, live.Name, oc, lc},
	} {
		sub := d.SubName(r.from, r.to)
		if err := d.dropSubscriptionIn(ctx, r.recvSrv, r.recvDB, sub); err != nil {
			return fmt.Errorf("retire: %w", err)
		}
		if err := d.dropSlotOn(ctx, r.sendSrv, sub); err != nil {
			return fmt.Errorf("retire: %w", err)
		}
		if err := d.dropPublicationIn(ctx, r.sendSrv, r.sendDB, d.PubName(r.from)); err != nil {
			return fmt.Errorf("retire: %w", err)
		}
	}

	if len(live.HeldBack) > 0 {
		if _, err := d.migrate(ctx, live.Server, live.Name, live.Migrations, "teal", 0, false, live.HeldBack); err != nil {
			return fmt.Errorf("retire: held-back migrations %v: %w", live.HeldBack, err)
		}
		live.HeldBack = nil
	}

	if !old.Production {
		if err := d.dropCopy(ctx, old.Server, old.Name); err != nil {
			return fmt.Errorf("retire: %w", err)
		}
		d.log().Info("old copy dropped", "app", d.app, "database", old.Name, "color", oc)
		return nil
	}
	exists, err := d.databaseExists(ctx, oldSrv, old.Name)
	if err != nil || !exists {
		return err
	}
	db, err := d.Admin(ctx, old.Server, old.Name)
	if err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	if err := d.freezeRole(ctx, db, old.Role); err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	if _, err := db.Exec(ctx, revokeAllStatement(old.Role)); err != nil {
		return fmt.Errorf("retire: revoke %s's privileges: %w", old.Role, err)
	}
	d.log().Info("old colour's role revoked; the production database is kept: teal never drops the database it first met",
		"app", d.app, "database", old.Name, "role", old.Role)
	return nil
}

// revokeAllStatement takes every privilege role has on the current database away.
func revokeAllStatement(role string) string {
	var b strings.Builder
	b.WriteString("DO $teal$ DECLARE s name; BEGIN\n")
	b.WriteString("FOR s IN SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP\n")
	for _, p := range []string{
		"REVOKE ALL ON ALL TABLES IN SCHEMA %1$I FROM %2$I",
		"REVOKE ALL ON ALL SEQUENCES IN SCHEMA %1$I FROM %2$I",
		"REVOKE ALL ON SCHEMA %1$I FROM %2$I",
	} {
		fmt.Fprintf(&b, "EXECUTE format(%s, s, %s);\n", quoteLiteral(p), quoteLiteral(role))
	}
	b.WriteString("END LOOP;\n")
	fmt.Fprintf(&b, "EXECUTE format('REVOKE ALL ON DATABASE %%I FROM %%I', current_database(), %s);\n", quoteLiteral(role))
	b.WriteString("END $teal$;\n")
	r := quoteIdent(role)
	b.WriteString("ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM " + r + ";\n")
	b.WriteString("ALTER DEFAULT PRIVILEGES REVOKE ALL ON SEQUENCES FROM " + r + ";\n")
	return b.String()
}

// Leftovers lists the slots, publications and subscriptions teal names for the app (teal_<app>_…)
// that none of the known databases accounts for — what a crash or a failed cleanup left — each
// as a sentence saying where it is and the SQL that drops it. An inactive slot is reported with
// the WAL it retains. Call it at start with the databases of both colours' environments.
func (d *Database) Leftovers(ctx context.Context, known []*teal.DBEnv) ([]string, error) {
	left, err := d.leftovers(ctx, known)
	if err != nil {
		return nil, fmt.Errorf("leftovers: %w", err)
	}
	return left, nil
}

// replObject is a slot, publication or subscription teal may have created.
type replObject struct {
	kind   string // "slot", "publication" or "subscription"
	name   string
	srv    server
	db     string   // the slot's (sending) database, or the one the object is in
	active bool     // slot: a walsender uses it; subscription: enabled
	pid    int32    // slot: the walsender using it
	wal    int64    // slot: WAL retained, in bytes
	slot   string   // subscription: its slot
	pubs   []string // subscription: the publications it reads
}

func (o replObject) key() string { return o.kind + "|" + o.srv.addr + "|" + o.db + "|" + o.name }

// names are the only names teal gives slots, publications and subscriptions for the app.
func (d *Database) names() []string {
	return []string{d.PubName(teal.Blue), d.PubName(teal.Green), d.SubName(teal.Blue, teal.Green), d.SubName(teal.Green, teal.Blue)}
}

// scanReplication finds every slot, subscription and publication with one of teal's names on
// both servers. Publications live in each database's own catalog: every database that
// accepts connections is visited.
func (d *Database) scanReplication(ctx context.Context) ([]replObject, error) {
	names := d.names()
	var out []replObject
	for _, srv := range d.servers() {
		admin, err := d.maintenance(ctx, srv)
		if err != nil {
			return nil, err
		}
		rows, err := admin.Query(ctx, `SELECT slot_name, coalesce(database, ''), active, coalesce(active_pid, 0),
			coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint
			FROM pg_replication_slots WHERE slot_name = ANY($1)`, names)
		if err != nil {
			return nil, fmt.Errorf("slots on %s: %w", srv.addr, err)
		}
		for rows.Next() {
			o := replObject{kind: "slot", srv: srv}
			if err := rows.Scan(&o.name, &o.db, &o.active, &o.pid, &o.wal); err != nil {
				rows.Close()
				return nil, fmt.Errorf("slots on %s: %w", srv.addr, err)
			}
			out = append(out, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("slots on %s: %w", srv.addr, err)
		}

		rows, err = admin.Query(ctx, `SELECT s.subname, d.datname, s.subenabled, coalesce(s.subslotname, ''), s.subpublications
			FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE s.subname = ANY($1)`, names)
		if err != nil {
			return nil, fmt.Errorf("subscriptions on %s: %w", srv.addr, err)
		}
		for rows.Next() {
			o := replObject{kind: "subscription", srv: srv}
			if err := rows.Scan(&o.name, &o.db, &o.active, &o.slot, &o.pubs); err != nil {
				rows.Close()
				return nil, fmt.Errorf("subscriptions on %s: %w", srv.addr, err)
			}
			out = append(out, o)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("subscriptions on %s: %w", srv.addr, err)
		}

		dbs, err := queryStrings(ctx, admin, "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1")
		if err != nil {
			return nil, fmt.Errorf("databases on %s: %w", srv.addr, err)
		}
		for _, db := range dbs {
			pubs, err := d.publicationsIn(ctx, srv, db, names)
			if err != nil {
				return nil, err
			}
			for _, p := range pubs {
				out = append(out, replObject{kind: "publication", name: p, srv: srv, db: db})
			}
		}
	}
	return out, nil
}

// publicationsIn lists the publications of database db named one of names, through a
// connection of its own: most databases are visited once, not worth a pool.
func (d *Database) publicationsIn(ctx context.Context, srv server, db string, names []string) ([]string, error) {
	cc := srv.cfg.Copy()
	cc.Database = db
	// A database dropped meanwhile (its sessions terminated by DROP DATABASE … FORCE), or one
	// the admin may not enter, holds nothing of teal's.
	gone := func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && (pe.Code == "3D000" || pe.Code == "57P01" || pe.Code == "42501")
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if gone(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("publications in %s on %s: %w", db, srv.addr, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT pubname FROM pg_publication WHERE pubname = ANY($1)", names)
	if err == nil {
		var pubs []string
		if pubs, err = pgx.CollectRows(rows, pgx.RowTo[string]); err == nil {
			return pubs, nil
		}
	}
	if gone(err) {
		return nil, nil
	}
	return nil, fmt.Errorf("publications in %s on %s: %w", db, srv.addr, err)
}

// expected is what the known databases account for: for every pair of them with different
// colours a → b, a's publication in a's database, the slot a → b on a's server (of a's
// database) and the subscription a → b in b's database.
func (d *Database) expected(known []*teal.DBEnv) map[string]bool {
	out := map[string]bool{}
	for _, a := range known {
		for _, b := range known {
			if a == nil || b == nil {
				continue
			}
			ca, err1 := d.colorOf(a)
			cb, err2 := d.colorOf(b)
			if err1 != nil || err2 != nil || ca == cb {
				continue
			}
			sa, err1 := d.serverOf(a.Server)
			sb, err2 := d.serverOf(b.Server)
			if err1 != nil || err2 != nil {
				continue
			}
			sub := d.SubName(ca, cb)
			out[replObject{kind: "publication", name: d.PubName(ca), srv: sa, db: a.Name}.key()] = true
			out[replObject{kind: "slot", name: sub, srv: sa, db: a.Name}.key()] = true
			out[replObject{kind: "subscription", name: sub, srv: sb, db: b.Name}.key()] = true
		}
	}
	return out
}

// leftovers describes every object of the scan that known does not account for.
func (d *Database) leftovers(ctx context.Context, known []*teal.DBEnv) ([]string, error) {
	objs, err := d.scanReplication(ctx)
	if err != nil {
		return nil, err
	}
	want := d.expected(known)
	var out []string
	for _, o := range objs {
		if want[o.key()] {
			continue
		}
		out = append(out, describeLeftover(o))
	}
	sort.Strings(out)
	return out, nil
}

// describeLeftover says where o is and how to drop it.
func describeLeftover(o replObject) string {
	q := quoteIdent(o.name)
	switch o.kind {
	case "slot":
		state := fmt.Sprintf("inactive, retaining %s of WAL", formatBytes(o.wal))
		drop := fmt.Sprintf("SELECT pg_drop_replication_slot(%s);", quoteLiteral(o.name))
		if o.active {
			state = fmt.Sprintf("in use by process %d, retaining %s of WAL", o.pid, formatBytes(o.wal))
			drop = fmt.Sprintf("SELECT pg_terminate_backend(%d); then %s", o.pid, drop)
		}
		return fmt.Sprintf("leftover replication slot %s on %s (database %s, %s): no colour uses it; drop it on that server: %s",
			o.name, o.srv.addr, o.db, state, drop)
	case "subscription":
		return fmt.Sprintf("leftover subscription %s in database %s on %s: no colour expects it; drop it, connected to %s: ALTER SUBSCRIPTION %s DISABLE; ALTER SUBSCRIPTION %s SET (slot_name = NONE); DROP SUBSCRIPTION %s; then drop its slot %s on the sending server",
			o.name, o.db, o.srv.addr, o.db, q, q, q, quoteLiteral(o.slot))
	default:
		return fmt.Sprintf("leftover publication %s in database %s on %s: no colour expects it; drop it, connected to %s: DROP PUBLICATION %s;",
			o.name, o.db, o.srv.addr, o.db, q)
	}
}

// formatBytes is n in B, kB, MB or GB.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// dropCopy drops database name on the server at addr with all replication into and out of it.
func (d *Database) dropCopy(ctx context.Context, addr, name string) error {
	srv, err := d.serverOf(addr)
	if err != nil {
		return err
	}
	if name == d.prodDB && addr == d.prod.addr {
		return fmt.Errorf("drop %s: it is the production database", name)
	}
	if name == srv.cfg.Database {
		return fmt.Errorf("drop %s: it is the database teal administers %s from", name, addr)
	}
	objs, err := d.scanReplication(ctx)
	if err != nil {
		return fmt.Errorf("drop %s: %w", name, err)
	}
	in := func(o replObject) bool { return o.srv.addr == addr && o.db == name }
	dropped := map[string]bool{}
	var readPubs []string
	// What the copy receives: its subscriptions, their slots on the sending server.
	for _, o := range objs {
		if o.kind != "subscription" || !in(o) {
			continue
		}
		if err := d.dropSubscriptionIn(ctx, srv, name, o.name); err != nil {
			return err
		}
		dropped[o.key()] = true
		readPubs = append(readPubs, o.pubs...)
		if o.slot == "" || slotStillUsed(objs, dropped, o.slot) {
			continue
		}
		for _, s := range objs {
			if s.kind == "slot" && s.name == o.slot {
				if err := d.dropSlotOn(ctx, s.srv, s.name); err != nil {
					return err
				}
			}
		}
	}
	// What the copy sends (it was live once): the subscriptions elsewhere reading its slots.
	for _, s := range objs {
		if s.kind != "slot" || !in(s) {
			continue
		}
		for _, o := range objs {
			if o.kind == "subscription" && o.slot == s.name && !in(o) && !dropped[o.key()] {
				if err := d.dropSubscriptionIn(ctx, o.srv, o.db, o.name); err != nil {
					return err
				}
				dropped[o.key()] = true
			}
		}
		if err := d.dropSlotOn(ctx, s.srv, s.name); err != nil {
			return err
		}
	}

	exists, err := d.databaseExists(ctx, srv, name)
	if err != nil {
		return err
	}
	if exists {
		d.forgetPool(addr, name)
		admin, err := d.maintenance(ctx, srv)
		if err != nil {
			return err
		}
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(name)+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
	}

	// The publications the copy read, where no remaining subscription reads them.
	for _, o := range objs {
		if o.kind != "publication" || in(o) || !slices.Contains(readPubs, o.name) || pubStillUsed(objs, dropped, o.name) {
			continue
		}
		if err := d.dropPublicationIn(ctx, o.srv, o.db, o.name); err != nil {
			return err
		}
	}
	return nil
}

// slotStillUsed reports whether a subscription not dropped reads slot.
func slotStillUsed(objs []replObject, dropped map[string]bool, slot string) bool {
	for _, o := range objs {
		if o.kind == "subscription" && o.slot == slot && !dropped[o.key()] {
			return true
		}
	}
	return false
}

// pubStillUsed reports whether a subscription not dropped reads a publication named pub.
func pubStillUsed(objs []replObject, dropped map[string]bool, pub string) bool {
	for _, o := range objs {
		if o.kind == "subscription" && !dropped[o.key()] && slices.Contains(o.pubs, pub) {
			return true
		}
	}
	return false
}

// databaseExists reports whether database name exists on srv.
func (d *Database) databaseExists(ctx context.Context, srv server, name string) (bool, error) {
	admin, err := d.maintenance(ctx, srv)
	if err != nil {
		return false, err
	}
	var ok bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok); err != nil {
		return false, fmt.Errorf("database %s on %s: %w", name, srv.addr, err)
	}
	return ok, nil
}

// dropSubscriptionIn drops subscription sub of database db on srv, if both exist. It is
// disabled and detached from its slot first, so that dropping it never waits on the sending
// server; the slot is the caller's to drop (dropSlotOn).
func (d *Database) dropSubscriptionIn(ctx context.Context, srv server, db, sub string) error {
	exists, err := d.databaseExists(ctx, srv, db)
	if err != nil || !exists {
		return err
	}
	p, err := d.Admin(ctx, srv.addr, db)
	if err != nil {
		return fmt.Errorf("drop subscription %s: %w", sub, err)
	}
	if err := dropSubscription(ctx, p, sub); err != nil {
		return fmt.Errorf("in %s: %w", db, err)
	}
	return nil
}

// slotDropTimeout bounds the wait for a slot's walsender to go away after its subscription
// was disabled.
const slotDropTimeout = 10 * time.Second

// dropSlotOn drops replication slot name on srv if it exists. A walsender still using it (the
// subscription was just disabled, or a crashed teal's replication connection) is terminated:
// a slot teal no longer reads must not retain WAL.
func (d *Database) dropSlotOn(ctx context.Context, srv server, name string) error {
	admin, err := d.maintenance(ctx, srv)
	if err != nil {
		return fmt.Errorf("drop slot %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, slotDropTimeout)
	defer cancel()
	if err := dropSlot(ctx, admin, name, true); err != nil {
		return fmt.Errorf("on %s: %w", srv.addr, err)
	}
	return nil
}

// dropPublicationIn drops publication pub of database db on srv, if both exist.
func (d *Database) dropPublicationIn(ctx context.Context, srv server, db, pub string) error {
	exists, err := d.databaseExists(ctx, srv, db)
	if err != nil || !exists {
		return err
	}
	p, err := d.Admin(ctx, srv.addr, db)
	if err != nil {
		return fmt.Errorf("drop publication %s: %w", pub, err)
	}
	if _, err := p.Exec(ctx, "DROP PUBLICATION IF EXISTS "+quoteIdent(pub)); err != nil {
		return fmt.Errorf("drop publication %s in %s: %w", pub, db, err)
	}
	return nil
}

// forgetPool closes and forgets the admin pool of database db on the server at addr, before
// the database is dropped.
func (d *Database) forgetPool(addr, db string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := addr + "/" + db
	if p, ok := d.pools[key]; ok {
		p.Close()
		delete(d.pools, key)
	}
}
