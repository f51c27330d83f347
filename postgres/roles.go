package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"teal.dev/teal"
)

// A colour's login role has one of three states on its own database. Grants, not LOGIN, are
// the gate: a REVOKE takes effect for sessions that are already connected, at their next
// statement, while NOLOGIN only stops new sessions.
//
//	closed  LOGIN, CONNECT, USAGE on the schemas, SELECT on every table and sequence: a copy
//	        that is syncing or previewed can be read but not written (a write would collide
//	        with replication).
//	open    closed + INSERT, UPDATE, DELETE on every table, USAGE and UPDATE on every
//	        sequence, and the same by default on what the admin role creates later (migrations).
//	frozen  NOLOGIN, DML revoked, and every backend of the role terminated: no write can
//	        happen or be in flight. A backend killed mid-transaction is rolled back, so its
//	        write was never acknowledged.

// roleStatement is the SQL that puts role in a state on the current database; it runs as one
// simple-protocol query, so it is one round trip and one implicit transaction.
func roleStatement(role, state string) string {
	r := quoteIdent(role)
	var perSchema, defaults []string
	login := "LOGIN"
	switch state {
	case "open":
		perSchema = []string{
			"GRANT USAGE ON SCHEMA %1$I TO %2$I",
			"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %1$I TO %2$I",
			"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %1$I TO %2$I",
		}
		defaults = []string{
			"ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO " + r,
			"ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO " + r,
		}
	case "closed", "frozen":
		perSchema = []string{
			"GRANT USAGE ON SCHEMA %1$I TO %2$I",
			"REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA %1$I FROM %2$I",
			"GRANT SELECT ON ALL TABLES IN SCHEMA %1$I TO %2$I",
			"REVOKE USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA %1$I FROM %2$I",
			"GRANT SELECT ON ALL SEQUENCES IN SCHEMA %1$I TO %2$I",
		}
		defaults = []string{
			"ALTER DEFAULT PRIVILEGES REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLES FROM " + r,
			"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO " + r,
			"ALTER DEFAULT PRIVILEGES REVOKE USAGE, UPDATE ON SEQUENCES FROM " + r,
			"ALTER DEFAULT PRIVILEGES GRANT SELECT ON SEQUENCES TO " + r,
		}
		if state == "frozen" {
			login = "NOLOGIN"
		}
	default:
		panic("postgres: unknown role state " + state)
	}
	var b strings.Builder
	// Every user schema, not only public: an app with its own schemas is gated the same way.
	b.WriteString("DO $teal$ DECLARE s name; BEGIN\n")
	b.WriteString("FOR s IN SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP\n")
	for _, p := range perSchema {
		fmt.Fprintf(&b, "EXECUTE format(%s, s, %s);\n", quoteLiteral(p), quoteLiteral(role))
	}
	b.WriteString("END LOOP;\n")
	fmt.Fprintf(&b, "EXECUTE format('GRANT CONNECT ON DATABASE %%I TO %%I', current_database(), %s);\n", quoteLiteral(role))
	b.WriteString("END $teal$;\n")
	for _, s := range defaults {
		b.WriteString(s + ";\n")
	}
	b.WriteString("ALTER ROLE " + r + " " + login + ";\n")
	return b.String()
}

// ensureRole makes sure colour c's login role exists on the server at addr with its stored
// password (created on first use) and LOGIN. The password goes to the server only as a
// SCRAM-SHA-256 verifier, so it never appears in the server's statement logs.
func (d *Database) ensureRole(ctx context.Context, addr string, c teal.Color) (role, password string, err error) {
	role = d.RoleName(c)
	password, err = d.password(role)
	if err != nil {
		return "", "", err
	}
	verifier, err := scramVerifier(password)
	if err != nil {
		return "", "", fmt.Errorf("ensure role %s: %w", role, err)
	}
	admin, err := d.Admin(ctx, addr, "postgres")
	if err != nil {
		return "", "", fmt.Errorf("ensure role %s: %w", role, err)
	}
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		return "", "", fmt.Errorf("ensure role %s: %w", role, err)
	}
	alter := "ALTER ROLE " + quoteIdent(role) + " LOGIN PASSWORD " + quoteLiteral(verifier)
	if !exists {
		_, err = admin.Exec(ctx, "CREATE ROLE "+quoteIdent(role)+" LOGIN PASSWORD "+quoteLiteral(verifier))
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42710" { // duplicate_object: created meanwhile
			_, err = admin.Exec(ctx, alter)
		}
	} else {
		_, err = admin.Exec(ctx, alter)
	}
	if err != nil {
		return "", "", fmt.Errorf("ensure role %s: %w", role, err)
	}
	return role, password, nil
}

// closeRole puts role in state closed on db's database (and gives it LOGIN).
func (d *Database) closeRole(ctx context.Context, db *pgxpool.Pool, role string) error {
	if _, err := db.Exec(ctx, roleStatement(role, "closed")); err != nil {
		return fmt.Errorf("close role %s: %w", role, err)
	}
	return nil
}

// openRole puts role in state open on db's database; it also re-opens a frozen role.
func (d *Database) openRole(ctx context.Context, db *pgxpool.Pool, role string) error {
	if _, err := db.Exec(ctx, roleStatement(role, "open")); err != nil {
		return fmt.Errorf("open role %s: %w", role, err)
	}
	return nil
}

// freezeRole puts role in state frozen on db's database: NOLOGIN and DML revoked in one
// transaction, then every backend the role had on the server terminated, and it returns only
// once they have exited (or ctx ends): a transaction of theirs has then committed or rolled
// back. The revoke comes first so that a session that slips past the termination scan can no
// longer write either.
func (d *Database) freezeRole(ctx context.Context, db *pgxpool.Pool, role string) error {
	if _, err := db.Exec(ctx, roleStatement(role, "frozen")); err != nil {
		return fmt.Errorf("freeze role %s: %w", role, err)
	}
	if err := terminateBackends(ctx, db, role); err != nil {
		return fmt.Errorf("freeze role %s: %w", role, err)
	}
	return nil
}

// terminateBackends terminates every backend role has on db's server and waits until those
// that were not idle have exited. The caller has already revoked the role's DML, which every
// later statement of any session sees, so only a statement or transaction begun before the
// revoke can still write: its backend existed, and was not idle, when this looks. An idle
// backend has no transaction (a backend reports idle only after its commit) and what it
// starts next cannot write, so its exit is not waited for; nor is any backend that appears
// later, which matters while the role's pools keep retrying to connect.
func terminateBackends(ctx context.Context, db *pgxpool.Pool, role string) error {
	var pids []int32
	var started []time.Time
	err := db.QueryRow(ctx, `SELECT coalesce(array_agg(pid) FILTER (WHERE busy), '{}'),
			coalesce(array_agg(backend_start) FILTER (WHERE busy), '{}'),
			count(pg_terminate_backend(pid))
		FROM (SELECT pid, backend_start, state IS DISTINCT FROM 'idle' AS busy
			FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()) a`, role).Scan(&pids, &started, new(int64))
	if err != nil {
		return fmt.Errorf("terminate backends: %w", err)
	}
	if len(pids) == 0 {
		return nil
	}
	// (pid, backend_start) names a backend: a pid can be reused.
	const left = `SELECT count(*) FROM pg_stat_activity a
		JOIN unnest($1::int4[], $2::timestamptz[]) AS t(pid, started) ON a.pid = t.pid AND a.backend_start = t.started`
	wait := time.Millisecond
	for {
		var n int
		if err := db.QueryRow(ctx, left, pids, started).Scan(&n); err != nil {
			return fmt.Errorf("terminate backends: %w", err)
		}
		if n == 0 {
			return nil
		}
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("terminate backends: %d of %d left: %w", n, len(pids), err)
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// quoteLiteral quotes s as a PostgreSQL string literal (standard_conforming_strings on, the
// default since 9.1; the E form is used when s holds a backslash, so it is right either way).
func quoteLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		q = "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}

// scramIterations is PostgreSQL's default scram_iterations.
const scramIterations = 4096

// scramVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores for password (RFC 5802,
// 7677); given to CREATE/ALTER ROLE … PASSWORD it is stored as is. The password is ASCII (hex),
// so SASLprep leaves it unchanged.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return "", err
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", scramIterations, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key"))), nil
}

// pgxIdent quotes a possibly schema-qualified name for SQL.
func pgxIdent(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// closedRoleOn makes sure colour c's role exists on the preproduction server and is closed on
// the copy cp: a new colour's instances may read their copy, not write it.
func (d *Database) closedRoleOn(ctx context.Context, cp *pgxpool.Pool, c teal.Color) (string, error) {
	role, _, err := d.ensureRole(ctx, d.preprod.addr, c)
	if err != nil {
		return "", err
	}
	return role, d.closeRole(ctx, cp, role)
}
