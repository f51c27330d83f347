package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/spf13/cobra"

	"teal.dev/teal"
	"teal.dev/teal/artifact"
	"teal.dev/teal/migrate"
	"teal.dev/teal/sqlite"
)

// dbConnectTimeout bounds how long `teal db plan` tries to reach the database.
const dbConnectTimeout = 15 * time.Second

// dbPlanOptions are the flags of `teal db plan`.
type dbPlanOptions struct {
	version string // plan this pushed version's migrations
	dir     string // plan the migrations in this directory
	sql     bool   // print every statement
}

// newDBCmd is `teal db`, the database commands that work without a server.
func newDBCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Work with the app's database (needs no server)",
	}
	var o dbPlanOptions
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Show the migrations the next release would run, and whether each is safe",
		Long: `teal db plan shows what the next release would do to the database, without doing
it: the migrations already applied, the files that would run, and, when a colour
is live (the release would migrate a copy that replicates from it), the files
held back to after the switch and those refused because they would break
replication, each with the reason and the fix.

It plans against the live colour's database, read from the server's state in
data_dir, or against database.production before the first release. The
migrations are those of --dir, else of the version's artifact (--version, else
the newest pushed) at database.migrations.

Exits 0 whenever it could plan, refused files included; 2 on a config or usage
error; 1 when the database cannot be reached.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDBPlan(cmd.Context(), g, o)
		},
	}
	f := plan.Flags()
	f.StringVar(&o.version, "version", "", "plan the migrations of this pushed version (default: the newest pushed)")
	f.StringVar(&o.dir, "dir", "", "plan the migrations in this directory instead of an artifact's")
	f.BoolVar(&o.sql, "sql", false, "print every statement's SQL with its label and reason")
	plan.MarkFlagsMutuallyExclusive("version", "dir")
	cmd.AddCommand(plan)
	return cmd
}

// dbPlanTarget is the database a plan is made against.
type dbPlanTarget struct {
	conn *pgx.ConnConfig
	// live is the live colour's database; nil when nothing with a database is live yet, and
	// the next release migrates database.production in place.
	live      *teal.DBEnv
	liveColor teal.Color
}

// describe says which database the plan is for, and why.
func (t *dbPlanTarget) describe() string {
	addr := net.JoinHostPort(t.conn.Host, strconv.Itoa(int(t.conn.Port)))
	if t.live == nil {
		return fmt.Sprintf("Database: %s on %s, database.production (no colour with a database is live: the next release migrates it in place)", t.conn.Database, addr)
	}
	return fmt.Sprintf("Database: %s on %s, the live colour %s's (%s); the next release migrates a copy of it that replicates from it", t.conn.Database, addr, t.liveColor, t.live.Version)
}

// dbPlanJSON is what `teal db plan --json` prints.
type dbPlanJSON struct {
	Database    string        `json:"database"`
	Server      string        `json:"server"`
	Live        teal.Color    `json:"live,omitempty"`
	Migrations  string        `json:"migrations"`
	Version     string        `json:"version,omitempty"`
	Replicating bool          `json:"replicating"`
	Plan        *migrate.Plan `json:"plan"`
}

func runDBPlan(ctx context.Context, g *globals, o dbPlanOptions) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return &usageError{err: err}
	}
	if cfg.Database.Production == "" {
		return &usageError{
			err:  fmt.Errorf("%s: database.production is not set: there is no database to plan against", g.configPath),
			hint: "set database.mode: clone and database.production in the config",
		}
	}
	dir, version, err := migrationsDir(ctx, cfg, o)
	if err != nil {
		return err
	}
	target, err := planTarget(ctx, cfg)
	if err != nil {
		return err
	}

	db := stdlib.OpenDB(*target.conn)
	defer db.Close()
	// goose holds its lock on one connection while the other reads; a plan needs no more.
	db.SetMaxOpenConns(2)
	pctx, cancel := context.WithTimeout(ctx, dbConnectTimeout)
	err = db.PingContext(pctx)
	cancel()
	if err != nil {
		// pgx's connect errors name the host, user and database, never the password.
		return fmt.Errorf("connect to database %s: %w", target.conn.Database, err)
	}
	replicating := target.live != nil
	plan, err := migrate.New(db, dir).Plan(ctx, replicating)
	if err != nil {
		return fmt.Errorf("plan migrations of %s: %w", dir, err)
	}
	if g.json {
		return g.printJSON(dbPlanJSON{
			Database:    target.conn.Database,
			Server:      net.JoinHostPort(target.conn.Host, strconv.Itoa(int(target.conn.Port))),
			Live:        target.liveColor,
			Migrations:  dir,
			Version:     version,
			Replicating: replicating,
			Plan:        plan,
		})
	}
	fmt.Fprintln(g.stdout, target.describe())
	if version != "" {
		fmt.Fprintf(g.stdout, "Migrations: %s (version %s)\n", dir, version)
	} else {
		fmt.Fprintf(g.stdout, "Migrations: %s\n", dir)
	}
	if err := migrate.FormatPlan(g.stdout, plan, o.sql); err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	return nil
}

// migrationsDir finds the directory of migrations to plan, and the version it belongs to
// ("" for --dir or a plain database.migrations path).
func migrationsDir(ctx context.Context, cfg teal.Config, o dbPlanOptions) (dir, version string, err error) {
	if o.dir != "" {
		dir, err := filepath.Abs(o.dir)
		if err != nil {
			return "", "", &usageError{err: fmt.Errorf("--dir %s: %w", o.dir, err)}
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return "", "", &usageError{err: fmt.Errorf("--dir %s: not a directory", o.dir)}
		}
		return dir, "", nil
	}
	tmpl := cfg.Database.Migrations
	if !strings.Contains(tmpl, "{artifact}") {
		// A plain path, relative to the config file like data_dir.
		if o.version != "" {
			return "", "", &usageError{
				err:  fmt.Errorf("--version %s: database.migrations (%s) is a plain path, not inside an artifact", o.version, tmpl),
				hint: "leave --version out, or use --dir",
			}
		}
		if !filepath.IsAbs(tmpl) {
			tmpl = filepath.Join(filepath.Dir(cfg.Path), tmpl)
		}
		return filepath.Clean(tmpl), "", nil
	}

	store := artifact.NewStore(filepath.Join(cfg.DataDir, "artifacts"))
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "artifacts")); errors.Is(err, fs.ErrNotExist) {
		return "", "", noArtifact(o.version)
	}
	if err := store.Open(ctx); err != nil {
		return "", "", err
	}
	var a *teal.Artifact
	if o.version != "" {
		a, err = store.Get(ctx, o.version)
		if errors.Is(err, teal.ErrNotFound) {
			return "", "", noArtifact(o.version)
		}
	} else {
		var all []*teal.Artifact
		all, err = store.List(ctx)
		if err == nil && len(all) == 0 {
			return "", "", noArtifact("")
		}
		if err == nil {
			// List is oldest push first: the newest is what a release would most likely take.
			a = all[len(all)-1]
		}
	}
	if err != nil {
		return "", "", fmt.Errorf("find the migrations: %w", err)
	}
	return strings.ReplaceAll(tmpl, "{artifact}", a.Path), a.Version, nil
}

// noArtifact is the error for a version that was not pushed ("" for none at all).
func noArtifact(version string) error {
	if version == "" {
		return &usageError{
			err:  errors.New("no artifact has been pushed: there are no migrations to plan"),
			hint: "push one with teal artifact push PATH --version V, or plan a directory with --dir",
		}
	}
	return &usageError{
		err:  fmt.Errorf("version %s: no such artifact", version),
		hint: "teal artifact list shows the versions pushed",
	}
}

// planTarget finds the database to plan against: the live colour's, as the server recorded
// it, else database.production.
func planTarget(ctx context.Context, cfg teal.Config) (*dbPlanTarget, error) {
	// The config was validated, so the DSNs parse; the errors below are for a PG* variable
	// (which pgx reads too) changed meanwhile, and never quote the DSN: it holds a password.
	prod, err := pgx.ParseConfig(cfg.Database.Production)
	if err != nil {
		return nil, &usageError{err: errors.New("database.production: not a valid connection string"), hint: "teal config check says why"}
	}
	sys, err := readSystem(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var live *teal.DBEnv
	if sys != nil && sys.Live != "" {
		if env := sys.Environments[sys.Live]; env != nil {
			live = env.Database
		}
	}
	if live == nil {
		return &dbPlanTarget{conn: prod}, nil
	}
	srv := prod
	if cfg.Database.Preproduction != "" {
		pre, err := pgx.ParseConfig(cfg.Database.Preproduction)
		if err != nil {
			return nil, &usageError{err: errors.New("database.preproduction: not a valid connection string"), hint: "teal config check says why"}
		}
		// A copy on the preproduction server is reached with its credentials; the copies
		// live there, and production may be the same server with other credentials.
		if serverAddr(pre) == live.Server {
			srv = pre
		}
	}
	if serverAddr(srv) != live.Server {
		return nil, &usageError{
			err:  fmt.Errorf("the live colour %s's database %s is on %s, which is neither database.production's server nor database.preproduction's", sys.Live, live.Name, live.Server),
			hint: "was the config changed since the last release? restore the servers the databases are on",
		}
	}
	conn := srv.Copy()
	conn.Database = live.Name
	return &dbPlanTarget{conn: conn, live: live, liveColor: sys.Live}, nil
}

// serverAddr is host:port of a connection config, as teal.DBEnv.Server records it.
func serverAddr(c *pgx.ConnConfig) string {
	return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
}

// readSystem reads the server's persisted state, or returns nil when there is none yet. The
// store is opened only if it exists: planning must not create a server's state.
func readSystem(ctx context.Context, cfg teal.Config) (*teal.System, error) {
	path := filepath.Join(cfg.DataDir, "teal.db")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	store := sqlite.NewStore(path)
	if err := store.Open(ctx); err != nil {
		return nil, fmt.Errorf("read the server's state: %w", err)
	}
	defer store.Close()
	sys, err := store.System(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the server's state: %w", err)
	}
	return sys, nil
}
