package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"teal.dev/teal"
)

// ErrReplication marks a copy whose replication has stopped or cannot be trusted: an apply
// error, a missing subscription or slot, DDL on the live database. Unlike a lag refusal
// (teal.ErrRefused), it does not pass by waiting: the release fails.
var ErrReplication = errors.New("replication stopped")

// readyFenceTimeout bounds the fence round trip of one Ready call: a copy that cannot show a
// fresh row within it is behind.
const readyFenceTimeout = 5 * time.Second

// Ready returns nil when the copy env may be promoted: its subscription runs without error,
// the live database has no table or column the copy lacks, replication lag is within
// database.max_lag and a fence row written on the live database arrives. A lag refusal wraps
// teal.ErrRefused (wait and ask again); a stopped replication wraps ErrReplication. A
// production database is always ready, with zero lag. Ready is cheap when the copy is in
// sync: a few catalog queries and one fence round trip, a few milliseconds.
func (d *Database) Ready(ctx context.Context, env *teal.DBEnv) (teal.DBLag, error) {
	if d.cfg.Mode == ModeSnapshot {
		return d.snapshotReady(ctx, env)
	}
	lag := teal.DBLag{Checked: time.Now()}
	if env == nil {
		return lag, errors.New("database ready: no database")
	}
	if env.Production || d.shared() {
		return lag, nil // nothing replicates into it
	}
	c, err := d.colorOf(env)
	if err != nil {
		return lag, fmt.Errorf("database ready: %w", err)
	}
	sub, pub := d.SubName(c.Other(), c), d.PubName(c.Other())
	cp, err := d.Admin(ctx, env.Server, env.Name)
	if err != nil {
		return lag, fmt.Errorf("database ready: %w", err)
	}
	st, err := subscriptionDetail(ctx, cp, sub)
	if err != nil {
		return lag, fmt.Errorf("database ready: %w", err)
	}
	if !st.exists {
		return lag, fmt.Errorf("database ready: %w: subscription %s is missing on database %s", ErrReplication, sub, env.Name)
	}
	sender, senderDB, err := d.findSlot(ctx, st.slot)
	if err != nil {
		return lag, fmt.Errorf("database ready: %w", err)
	}
	stopped := func(st subDetail) error {
		err := st.failure(sub)
		if err == nil {
			return nil
		}
		if detail := d.stuckChange(ctx, cp, sub, sender, senderDB, st.slot, pub); detail != "" {
			err = fmt.Errorf("%w; %s", err, detail)
		}
		return teal.Errorf(ErrReplication, "the copy server's log has the error; fix the conflicting row on the copy and ALTER SUBSCRIPTION "+sub+" ENABLE, or release again (never ALTER SUBSCRIPTION … SKIP: it drops a whole transaction)",
			"database ready: %s", err)
	}
	if err := stopped(st); err != nil {
		return lag, err
	}
	live, err := d.Admin(ctx, sender.addr, senderDB)
	if err != nil {
		return lag, fmt.Errorf("database ready: %w", err)
	}
	if err := checkLiveDDL(ctx, live, cp, pub); err != nil {
		return lag, fmt.Errorf("database ready: %w", err)
	}

	lag.Bytes, err = byteLag(ctx, live, cp, sub)
	if err != nil {
		return lag, fmt.Errorf("database ready: %w", err)
	}
	limit := int64(d.cfg.MaxLag)
	if limit <= 0 {
		limit = int64(teal.DefaultMaxLag)
	}
	if lag.Bytes > limit {
		return lag, teal.Errorf(teal.ErrRefused, "wait: the gate opens once the copy has caught up",
			"database ready: replication lag %d bytes is over database.max_lag (%d bytes)", lag.Bytes, limit)
	}
	fctx, cancel := context.WithTimeout(ctx, readyFenceTimeout)
	defer cancel()
	// While the fence is awaited, watch the subscription: an apply error stops it at once,
	// and the fence would then wait out its whole timeout.
	var wg sync.WaitGroup
	wg.Go(func() {
		for sleep(fctx, 100*time.Millisecond) == nil {
			if st, err := subscriptionDetail(fctx, cp, sub); err == nil && st.failure(sub) != nil {
				cancel()
			}
		}
	})
	lag.Fence, err = fence(fctx, live, cp)
	cancel()
	wg.Wait()
	if err != nil {
		// A fence that does not arrive may be a subscription that has just stopped.
		if st, serr := subscriptionDetail(ctx, cp, sub); serr == nil {
			if err := stopped(st); err != nil {
				return lag, err
			}
		}
		if ctx.Err() == nil && errors.Is(fctx.Err(), context.DeadlineExceeded) {
			lag.Fence = readyFenceTimeout
			return lag, teal.Errorf(teal.ErrRefused, "wait: the gate opens once the copy has caught up",
				"database ready: a fence row written on the live database did not reach the copy within %v", readyFenceTimeout)
		}
		return lag, fmt.Errorf("database ready: %w", err)
	}
	lag.Checked = time.Now()
	return lag, nil
}

// Watch checks env with Ready every interval until ctx ends or replication stops; then it
// calls onErr once with the error (wrapping ErrReplication, or why Ready could not run) and
// returns. Lag refusals are not errors here: they pass. Watch blocks; run it in a goroutine.
func (d *Database) Watch(ctx context.Context, env *teal.DBEnv, every time.Duration, onErr func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := d.Ready(ctx, env); err != nil && !errors.Is(err, teal.ErrRefused) && ctx.Err() == nil {
			onErr(err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// byteLag is how far, in WAL bytes, the subscription's apply worker is behind the live
// server's current WAL position.
func byteLag(ctx context.Context, live, cp *pgxpool.Pool, sub string) (int64, error) {
	var cur string
	if err := live.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&cur); err != nil {
		return 0, fmt.Errorf("replication lag: %w", err)
	}
	var bytes *int64
	err := cp.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, latest_end_lsn)::bigint FROM pg_stat_subscription
		WHERE subname = $2 AND relid IS NULL`, cur, sub).Scan(&bytes)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("replication lag: %w", err)
	}
	if bytes == nil {
		return 0, teal.Errorf(teal.ErrRefused, "wait: the worker starts within seconds",
			"replication lag: the apply worker of subscription %s has not reported yet", sub)
	}
	return max(*bytes, 0), nil
}

// findSlot returns the server and database of replication slot name.
func (d *Database) findSlot(ctx context.Context, name string) (server, string, error) {
	if name == "" {
		return server{}, "", fmt.Errorf("%w: the subscription has no slot", ErrReplication)
	}
	for _, srv := range d.servers() {
		admin, err := d.maintenance(ctx, srv)
		if err != nil {
			return server{}, "", err
		}
		var db *string
		err = admin.QueryRow(ctx, "SELECT database FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&db)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return server{}, "", fmt.Errorf("slot %s: %w", name, err)
		}
		if db == nil {
			return server{}, "", fmt.Errorf("slot %s on %s is not a logical slot", name, srv.addr)
		}
		return srv, *db, nil
	}
	return server{}, "", fmt.Errorf("%w: replication slot %s is missing on the sending server", ErrReplication, name)
}

// servers lists the distinct servers teal administers.
func (d *Database) servers() []server {
	if d.preprod.addr == d.prod.addr {
		return []server{d.prod}
	}
	return []server{d.prod, d.preprod}
}

// stuckChange describes the transaction a stopped subscription could not apply: the first one
// still waiting in its slot, decoded without consuming it. The server log has the error
// itself, which SQL cannot reach; the tables it touched are usually enough to find the row.
// It returns "" when the slot cannot be read (still in use for a moment after the stop).
func (d *Database) stuckChange(ctx context.Context, cp *pgxpool.Pool, sub string, sender server, db, slot, pub string) string {
	p, err := d.Admin(ctx, sender.addr, db)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// The subscriber's replication origin holds the commit LSN of the last transaction it
	// applied; the one after it is the one that failed.
	var applied uint64
	var lsn *string
	err = cp.QueryRow(ctx, `SELECT o.remote_lsn::text FROM pg_replication_origin_status o
		JOIN pg_subscription s ON o.external_id = 'pg_' || s.oid
		WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, sub).Scan(&lsn)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return ""
	}
	if lsn != nil {
		if applied, err = parseLSN(*lsn); err != nil {
			return ""
		}
	}
	var rows pgx.Rows
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		// The walsender of a just-disabled subscription exits a moment later; until then the
		// slot is active and cannot be read.
		var active bool
		if err := p.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&active); err != nil {
			return ""
		}
		if !active {
			rows, err = p.Query(ctx, `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, 5000,
				'proto_version', '1', 'publication_names', $2)`, slot, pub)
			if err == nil {
				break
			}
		}
		if sleep(ctx, wait) != nil {
			return ""
		}
	}
	var msgs [][]byte
	for rows.Next() {
		var b []byte
		if rows.Scan(&b) != nil {
			break
		}
		msgs = append(msgs, b)
	}
	rows.Close()
	changes := firstTransaction(msgs, applied)
	if len(changes) == 0 {
		return ""
	}
	var parts []string
	for _, ch := range changes {
		var name string
		if p.QueryRow(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
			JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, ch.rel).Scan(&name) != nil {
			name = fmt.Sprintf("relation %d", ch.rel)
		}
		parts = append(parts, ch.op+" on "+name)
	}
	return "the transaction it stopped at does " + strings.Join(parts, ", ")
}

// walChange is one table a decoded transaction touched, and how.
type walChange struct {
	op  string // INSERT, UPDATE, DELETE or TRUNCATE
	rel uint32 // the table's oid on the sending database
}

// firstTransaction parses pgoutput (protocol 1) messages and returns the tables changed by
// the first transaction that commits after LSN applied (the subscriber's position: the slot
// may still hold transactions already applied, confirmed only with the next feedback), in
// order of first change, each once per operation.
func firstTransaction(msgs [][]byte, applied uint64) []walChange {
	var out []walChange
	seen := map[walChange]bool{}
	skip := false
	for _, m := range msgs {
		if len(m) == 0 {
			continue
		}
		switch m[0] {
		case 'B':
			// Int64 final (commit) LSN, Int64 commit time, Int32 xid.
			skip = len(m) >= 9 && binary.BigEndian.Uint64(m[1:9]) <= applied
		case 'C':
			if len(out) > 0 {
				return out
			}
			skip = false
		case 'I', 'U', 'D':
			if skip || len(m) < 5 {
				continue
			}
			op := map[byte]string{'I': "INSERT", 'U': "UPDATE", 'D': "DELETE"}[m[0]]
			if c := (walChange{op: op, rel: binary.BigEndian.Uint32(m[1:5])}); !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		case 'T':
			// Int32 number of relations, Int8 options, then their oids.
			if skip || len(m) < 6 {
				continue
			}
			n := int(binary.BigEndian.Uint32(m[1:5]))
			for i := 0; i < n && 6+4*i+4 <= len(m); i++ {
				if c := (walChange{op: "TRUNCATE", rel: binary.BigEndian.Uint32(m[6+4*i:])}); !seen[c] {
					seen[c] = true
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// checkLiveDDL compares the live database's tables and columns with the copy's: one the copy
// lacks stalls replication of that table (or all of it) until the copy has it; a table not in
// the publication is not replicated at all.
func checkLiveDDL(ctx context.Context, live, cp *pgxpool.Pool, pub string) error {
	liveCols, err := columnsOf(ctx, live)
	if err != nil {
		return fmt.Errorf("live database's tables: %w", err)
	}
	copyCols, err := columnsOf(ctx, cp)
	if err != nil {
		return fmt.Errorf("copy's tables: %w", err)
	}
	published, err := queryStrings(ctx, live, `SELECT format('%I.%I', schemaname, tablename) FROM pg_publication_tables WHERE pubname = $1`, pub)
	if err != nil {
		return fmt.Errorf("published tables: %w", err)
	}
	inPub := make(map[string]bool, len(published))
	for _, t := range published {
		inPub[t] = true
	}
	tables := make([]string, 0, len(liveCols))
	for t := range liveCols {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	var found []string
	for _, t := range tables {
		have, ok := copyCols[t]
		if !ok {
			found = append(found, "table "+t+" exists on the live database but not on the copy")
			continue
		}
		in := make(map[string]bool, len(have))
		for _, col := range have {
			in[col] = true
		}
		for _, col := range liveCols[t] {
			if !in[col] {
				found = append(found, "column "+t+"."+col+" exists on the live database but not on the copy")
			}
		}
		if !inPub[t] {
			found = append(found, "table "+t+" is not in publication "+pub+": its rows are not replicated")
		}
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("%w: DDL on the live database during the release: %s (the copy cannot follow it; release again)", ErrReplication, strings.Join(found, "; "))
}

// columnsOf lists the app's tables and their columns, in column order.
func columnsOf(ctx context.Context, db *pgxpool.Pool) (map[string][]string, error) {
	rows, err := db.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname), a.attname, a.attnum
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE `+userTableFilter+` ORDER BY 1, 3`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var t string
		var col *string
		var num *int16
		if err := rows.Scan(&t, &col, &num); err != nil {
			return nil, err
		}
		if _, ok := out[t]; !ok {
			out[t] = nil
		}
		if col != nil {
			out[t] = append(out[t], *col)
		}
	}
	return out, rows.Err()
}

// parseLSN parses a pg_lsn's text form, "16/B374D848".
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("lsn %q: no /", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("lsn %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("lsn %q: %w", s, err)
	}
	return h<<32 | l, nil
}
