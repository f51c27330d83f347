// Package migrate applies an app's versioned SQL migrations to PostgreSQL, the way a
// blue-green release needs them: each file checksummed and validated before every run, each in
// its own transaction with a short lock_timeout and retries, one migrator at a time (advisory
// lock), a history of who applied what for which release, and a classifier that tells, by
// parsing every statement with the PostgreSQL parser, whether it is safe on a copy that is
// still receiving logical replication from the live database, must wait until after the
// cutover, or would break replication.
//
// It is built on pressly/goose v3's Provider: goose runs the migrations, keeps its version
// table (goose_db_version) and holds the advisory lock; every file is handed to goose as a
// migration function, so that SET LOCAL lock_timeout, the retries and teal's own history row
// (teal_migrations) run inside goose's transaction.
package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"teal.dev/teal"
)

// Label is the replication compatibility of a statement or a file.
type Label string

// Labels, from least to most severe.
const (
	// Safe statements may run on a copy while it receives replication from the live database.
	Safe Label = "safe before cutover"
	// Contract statements run only after the switch, once the old colour is gone.
	Contract Label = "after cutover only"
	// Breaking statements would stop replication into the copy: a release containing one is
	// refused.
	Breaking Label = "breaks replication"
)

func (l Label) rank() int {
	switch l {
	case Safe:
		return 0
	case Contract:
		return 1
	case Breaking:
		return 2
	default:
		return -1 // no label yet
	}
}

// Statement is one statement of a migration with its classification.
type Statement struct {
	SQL    string
	Label  Label
	Reason string // why it has its label
	Fix    string // for Contract and Breaking: how to make it safe, or what happens to it
}

// Migration is one migration file.
type Migration struct {
	Version       int64
	Name          string // the file's name, 0001_create_orders.sql
	Path          string
	SHA256        string // hex sha256 of the whole file
	NoTransaction bool   // -- +goose NO TRANSACTION
	// AfterCutover is set by a line AfterCutoverMark: every statement is held back to after the
	// switch, whatever the classifier says.
	AfterCutover bool
	Up           string // the Up section (lines before it blanked, so line numbers match the file)
	Statements   []Statement
	Label        Label // the most severe label of its statements
}

// setStatements records stmts and the file's label, applying AfterCutover.
func (m *Migration) setStatements(stmts []Statement) {
	m.Label = Safe
	for i := range stmts {
		if m.AfterCutover {
			s := &stmts[i]
			if s.Label == Safe {
				s.Reason = "the file is marked " + AfterCutoverMark + " (" + s.Reason + ")"
			} else {
				s.Reason = "the file is marked " + AfterCutoverMark + " (else " + string(s.Label) + ": " + s.Reason + ")"
			}
			s.Label, s.Fix = Contract, "runs after the switch, once the old colour is gone"
		}
		if stmts[i].Label.rank() > m.Label.rank() {
			m.Label = stmts[i].Label
		}
	}
	m.Statements = stmts
}

// AppliedMigration is one row of the migration history.
type AppliedMigration struct {
	Version   int64
	Name      string
	SHA256    string // "" for a version goose applied before teal kept history
	Actor     string
	ReleaseID int64
	AppliedAt time.Time
	Duration  time.Duration
}

// Plan is what a run would do, computed without changing anything.
type Plan struct {
	Applied []AppliedMigration
	// Pending are the files that would run now, in order.
	Pending []Migration
	// HeldBack (only when replicating) are the first file labelled "after cutover only" and
	// every later one: they run with UpTo after the old colour is gone.
	HeldBack []Migration
	// Refused (only when replicating) are the files with a statement that breaks replication:
	// with any, the run is refused before anything is applied.
	Refused []Migration
}

// UpOptions tune a run.
type UpOptions struct {
	// Replicating says the target is a copy receiving logical replication (or a database the
	// old colour still uses): only safe files before the first contract one run.
	Replicating bool
}

// Result is what a run did.
type Result struct {
	Applied  []AppliedMigration
	HeldBack []int64 // versions held back until after the switch
}

// Defaults of a Migrator.
const (
	DefaultLockTimeout          = 30 * time.Second
	DefaultStatementLockTimeout = 5 * time.Second
	DefaultRetries              = 5
	DefaultRetryBackoff         = time.Second
)

// Migrator applies the migrations of one directory to one database.
type Migrator struct {
	// Logger receives retries and applied migrations; nil discards.
	Logger *slog.Logger
	// Actor and ReleaseID are recorded with every migration applied.
	Actor     string
	ReleaseID int64
	// LockTimeout is how long to wait for the migration advisory lock held by another
	// migrator; = DefaultLockTimeout. Whole seconds, at least one.
	LockTimeout time.Duration
	// StatementLockTimeout is the session's lock_timeout while migrating, so that DDL never
	// queues behind a long transaction and blocks the app's queries behind it;
	// = DefaultStatementLockTimeout.
	StatementLockTimeout time.Duration
	// Retries is how many times a migration failing on lock_timeout (SQLSTATE 55P03) is
	// retried; = DefaultRetries.
	Retries int
	// RetryBackoff is the wait before the first retry, doubled for each next one;
	// = DefaultRetryBackoff.
	RetryBackoff time.Duration

	db  *sql.DB
	dir string
}

// New returns a Migrator of the migrations in dir for db (a database/sql pool over pgx's
// stdlib driver, with room for two connections: goose holds its lock on one).
func New(db *sql.DB, dir string) *Migrator {
	return &Migrator{
		LockTimeout:          DefaultLockTimeout,
		StatementLockTimeout: DefaultStatementLockTimeout,
		Retries:              DefaultRetries,
		RetryBackoff:         DefaultRetryBackoff,
		db:                   db,
		dir:                  dir,
	}
}

func (m *Migrator) log() *slog.Logger {
	if m.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Logger
}

// Plan validates the directory against the database's history and says what a run would do;
// replicating as in UpOptions. Errors: a file edited after it was applied (naming the file and
// both checksums), a pending version below the highest applied one (a gap), a version applied
// in the database that is not in the directory.
func (m *Migrator) Plan(ctx context.Context, replicating bool) (*Plan, error) {
	migs, err := Load(m.dir)
	if err != nil {
		return nil, err
	}
	return m.plan(ctx, migs, replicating)
}

func (m *Migrator) plan(ctx context.Context, migs []Migration, replicating bool) (*Plan, error) {
	applied, err := m.History(ctx)
	if err != nil {
		return nil, err
	}
	byVersion := make(map[int64]*Migration, len(migs))
	for i := range migs {
		byVersion[migs[i].Version] = &migs[i]
	}
	done := make(map[int64]bool, len(applied))
	var highest int64
	for _, a := range applied {
		f := byVersion[a.Version]
		if f == nil {
			return nil, teal.Errorf(teal.ErrInvalid,
				"the database is ahead of these migrations: deploy a version whose migrations include it",
				"migration version %d %sis applied in the database but is not in %s", a.Version, parenthesised(a.Name), m.dir)
		}
		if a.SHA256 != "" && a.SHA256 != f.SHA256 {
			return nil, teal.Errorf(teal.ErrInvalid,
				"restore the file as it was applied and put the change in a new migration",
				"migration %s was edited after it was applied: sha256 %s when applied, %s now", f.Name, a.SHA256, f.SHA256)
		}
		done[a.Version] = true
		highest = max(highest, a.Version)
	}
	p := &Plan{Applied: applied}
	var pending []Migration
	for _, f := range migs {
		if done[f.Version] {
			continue
		}
		if f.Version < highest {
			return nil, teal.Errorf(teal.ErrInvalid,
				fmt.Sprintf("give it a version above %d", highest),
				"migration %s is pending but version %d is already applied: a gap", f.Name, highest)
		}
		pending = append(pending, f)
	}
	if len(pending) == 0 {
		return p, nil
	}
	cat, err := loadCatalog(ctx, m.db)
	if err != nil {
		return nil, err
	}
	// The pending files are classified as one set, in order, against the database's schema:
	// "an existing table" is one not created earlier in the set.
	c := newClassifier(cat)
	for i := range pending {
		stmts, err := c.classify(pending[i].Up)
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", pending[i].Name, err)
		}
		pending[i].setStatements(stmts)
	}
	if !replicating {
		p.Pending = pending
		return p, nil
	}
	holding := false
	for _, f := range pending {
		switch {
		case f.Label == Breaking:
			p.Refused = append(p.Refused, f)
		case holding || f.Label == Contract:
			p.HeldBack = append(p.HeldBack, f)
		default:
			p.Pending = append(p.Pending, f)
		}
		holding = holding || f.Label != Safe
	}
	return p, nil
}

// Up validates and applies the pending migrations. With o.Replicating, a file that breaks
// replication refuses the whole run before anything is applied (an error wrapping
// teal.ErrRefused naming the file, statement, reason and fix), and the first "after cutover
// only" file and every later one are held back (Result.HeldBack) for UpTo.
func (m *Migrator) Up(ctx context.Context, o UpOptions) (*Result, error) {
	migs, err := Load(m.dir)
	if err != nil {
		return nil, err
	}
	p, err := m.plan(ctx, migs, o.Replicating)
	if err != nil {
		return nil, err
	}
	if len(p.Refused) > 0 {
		return nil, refusal(p.Refused)
	}
	res := &Result{}
	for _, f := range p.HeldBack {
		res.HeldBack = append(res.HeldBack, f.Version)
	}
	if len(p.Pending) == 0 {
		return res, nil
	}
	res.Applied, err = m.run(ctx, migs, p.Pending[len(p.Pending)-1].Version)
	return res, err
}

// UpTo applies exactly the given pending versions (the held-back ones, once the old colour is
// gone), whatever their labels. Versions already applied are skipped, so that it can be
// called again after a crash; the rest must be the lowest pending ones, or a gap would open.
func (m *Migrator) UpTo(ctx context.Context, versions []int64) (*Result, error) {
	migs, err := Load(m.dir)
	if err != nil {
		return nil, err
	}
	p, err := m.plan(ctx, migs, false)
	if err != nil {
		return nil, err
	}
	want := make(map[int64]bool, len(versions))
	known := make(map[int64]bool, len(migs))
	for _, f := range migs {
		known[f.Version] = true
	}
	for _, v := range versions {
		if !known[v] {
			return nil, teal.Errorf(teal.ErrInvalid, "", "migration version %d is not in %s", v, m.dir)
		}
		want[v] = true
	}
	var target int64
	var skipped string
	for _, f := range p.Pending {
		switch {
		case want[f.Version] && skipped != "":
			return nil, teal.Errorf(teal.ErrInvalid, "", "migration %s cannot run before %s, which is pending", f.Name, skipped)
		case want[f.Version]:
			target = f.Version
		case skipped == "":
			skipped = f.Name
		}
	}
	res := &Result{}
	if target == 0 {
		return res, nil
	}
	res.Applied, err = m.run(ctx, migs, target)
	return res, err
}

// refusal is the error of a run refused because files break replication.
func refusal(files []Migration) error {
	msg := "migrations refused, nothing was applied:"
	var fixes []string
	for _, f := range files {
		for _, s := range f.Statements {
			if s.Label != Breaking {
				continue
			}
			msg += fmt.Sprintf(" %s: statement %q breaks replication: %s; fix: %s.", f.Name, brief(s.SQL), s.Reason, s.Fix)
			fixes = append(fixes, s.Fix)
		}
	}
	hint := "change the migrations so that the copy can keep receiving replication (see teal db plan)"
	if len(fixes) == 1 {
		hint = fixes[0]
	}
	return teal.Errorf(teal.ErrRefused, hint, "%s", msg)
}

// parenthesised returns "(s) ", or "" for an empty s.
func parenthesised(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ") "
}
