// Package postgres is teal's database step on PostgreSQL (15+): it gives each colour its own
// copy of the live data, keeps it in sync with logical replication, applies the version's
// migrations, verifies it, and moves writes between colours with no acknowledged write lost.
//
// Naming is deterministic, so that everything teal creates can be found again from the
// catalogs after a crash: for app "shop", colour "green", version "v2":
//
//	database      shop_green_v2 (database.name_template)
//	login role    shop_green            the colour's instances connect as it
//	publication   teal_shop_blue        on a colour's database: what it sends
//	subscription  teal_shop_blue_green  on the receiving database, from blue to green
//	slot          teal_shop_blue_green  on the sending server
//	fence table   teal_fence            in every colour's database, replicated like the rest
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"teal.dev/teal"
)

// FenceTable is the table a fence row is written to on the sending side and awaited on the
// receiving side: when it arrives, everything committed before it has arrived too.
const FenceTable = "teal_fence"

// Database implements teal.Database on PostgreSQL.
type Database struct {
	// Logger receives progress; nil discards.
	Logger *slog.Logger

	app        string
	cfg        teal.DatabaseConfig
	secretsDir string // role passwords, 0600 files

	prod    server // the server of database.production
	preprod server // the server of database.preproduction (may be the same)
	prodDB  string // the production database's name

	mu    sync.Mutex
	pools map[string]*pgxpool.Pool // by server address + "/" + database
}

var _ teal.Database = (*Database)(nil)

// server is one PostgreSQL server teal administers, with the credentials from its DSN.
type server struct {
	addr string          // host:port, the key DBEnv.Server names
	cfg  *pgx.ConnConfig // admin connection settings (any database; Database is replaced)
}

// NewDatabase returns the database step for app. secretsDir keeps the colours' role
// passwords (0600). Call Open before anything else.
func NewDatabase(app string, cfg teal.DatabaseConfig, secretsDir string) *Database {
	return &Database{app: app, cfg: cfg, secretsDir: secretsDir, pools: make(map[string]*pgxpool.Pool)}
}

// Open parses the DSNs; connections are made when first needed.
func (d *Database) Open(ctx context.Context) error {
	pc, err := pgx.ParseConfig(d.cfg.Production)
	if err != nil {
		return fmt.Errorf("database.production: %w", err)
	}
	d.prod = server{addr: net.JoinHostPort(pc.Host, fmt.Sprint(pc.Port)), cfg: pc}
	d.prodDB = pc.Database
	d.preprod = d.prod
	if d.cfg.Preproduction != "" {
		ppc, err := pgx.ParseConfig(d.cfg.Preproduction)
		if err != nil {
			return fmt.Errorf("database.preproduction: %w", err)
		}
		d.preprod = server{addr: net.JoinHostPort(ppc.Host, fmt.Sprint(ppc.Port)), cfg: ppc}
	}
	return os.MkdirAll(d.secretsDir, 0o700)
}

// Close closes every pool.
func (d *Database) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, p := range d.pools {
		p.Close()
		delete(d.pools, k)
	}
	return nil
}

func (d *Database) log() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

// serverOf returns the server a DBEnv lives on.
func (d *Database) serverOf(addr string) (server, error) {
	switch addr {
	case d.preprod.addr:
		return d.preprod, nil
	case d.prod.addr:
		return d.prod, nil
	}
	return server{}, fmt.Errorf("database server %s is neither database.production's nor database.preproduction's", addr)
}

// Admin returns a pool of admin connections to database db on the server at addr.
func (d *Database) Admin(ctx context.Context, addr, db string) (*pgxpool.Pool, error) {
	srv, err := d.serverOf(addr)
	if err != nil {
		return nil, err
	}
	key := addr + "/" + db
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.pools[key]; ok {
		return p, nil
	}
	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cc := srv.cfg.Copy()
	cc.Database = db
	pc.ConnConfig = cc
	pc.MaxConns = 4
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to %s/%s: %w", addr, db, err)
	}
	d.pools[key] = p
	return p, nil
}

// ConnString returns a libpq URL for database db on the server at addr, as user with
// password (the admin's credentials when user is "").
func (d *Database) ConnString(addr, db, user, password string) (string, error) {
	srv, err := d.serverOf(addr)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "postgres", Host: addr, Path: "/" + db}
	if user == "" {
		user, password = srv.cfg.User, srv.cfg.Password
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	q := url.Values{}
	if srv.cfg.TLSConfig == nil {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Names of what teal creates for the app.

// RoleName is the login role of colour c.
func (d *Database) RoleName(c teal.Color) string { return ident(d.app + "_" + string(c)) }

// PubName is the publication on colour c's database.
func (d *Database) PubName(c teal.Color) string { return ident("teal_" + d.app + "_" + string(c)) }

// SubName is the subscription (and its slot) replicating from one colour to the other.
func (d *Database) SubName(from, to teal.Color) string {
	return ident("teal_" + d.app + "_" + string(from) + "_" + string(to))
}

// DBName is the database name of colour c's copy for version v (database.name_template).
func (d *Database) DBName(c teal.Color, version string) string {
	r := strings.NewReplacer("{app}", d.app, "{color}", string(c), "{version}", version)
	return ident(r.Replace(d.cfg.NameTemplate))
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// ident makes s a safe, unquoted-compatible PostgreSQL identifier: lower case, [a-z0-9_],
// at most 63 bytes.
func ident(s string) string {
	s = nonIdent.ReplaceAllString(strings.ToLower(s), "_")
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		s = "t_" + s
	}
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// password returns role's password, creating a random one (0600 file) the first time. It is
// never logged or printed.
func (d *Database) password(role string) (string, error) {
	path := filepath.Join(d.secretsDir, role+".password")
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read password of %s: %w", role, err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	pw := hex.EncodeToString(raw)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write password of %s: %w", role, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write password of %s: %w", role, err)
	}
	return pw, nil
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }
