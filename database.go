package teal

import (
	"context"
	"time"
)

// DatabaseConfig is teal.yaml's database section (spec/config.md). Mode "none" (the default,
// also when the section is absent) turns the database step off.
type DatabaseConfig struct {
	Mode            string        `yaml:"mode"`              // = none | clone | snapshot | shared
	Engine          string        `yaml:"engine"`            // = postgres
	Production      string        `yaml:"production"`        // DSN of the live database when teal first meets the app; required
	Preproduction   string        `yaml:"preproduction"`     // DSN of the server where colours' copies are created; = production's server
	NameTemplate    string        `yaml:"name_template"`     // = "{app}_{color}_{version}"
	Migrations      string        `yaml:"migrations"`        // = "{artifact}/migrations"
	Verify          string        `yaml:"verify"`            // = rowcounts | checksums | none
	MaxLag          ByteSize      `yaml:"max_lag"`           // = 16MB
	FreezeTimeout   time.Duration `yaml:"freeze_timeout"`    // = 10s
	ReverseSync     bool          `yaml:"reverse_sync"`      // = true
	KeepOldDatabase time.Duration `yaml:"keep_old_database"` // = 24h
	// CloneStrategy picks how a copy is filled: auto (by size), subscription (copy_data of
	// the subscription) or dump (exported-snapshot parallel pg_dump/pg_restore). = auto.
	CloneStrategy string `yaml:"clone_strategy"`
}

// ByteSize is a size in bytes, written in teal.yaml as 16MB, 512kB, 1GB or a plain number.
type ByteSize int64

// Database defaults.
const (
	DefaultDatabaseMode    = "none"
	DefaultDatabaseEngine  = "postgres"
	DefaultNameTemplate    = "{app}_{color}_{version}"
	DefaultMigrations      = "{artifact}/migrations"
	DefaultVerify          = "rowcounts"
	DefaultMaxLag          = ByteSize(16 << 20)
	DefaultFreezeTimeout   = 10 * time.Second
	DefaultKeepOldDatabase = 24 * time.Hour
	DefaultCloneStrategy   = "auto"
)

// DBEnv is one colour's database as teal recorded it; it is persisted in the colour's
// Environment, so that everything about it survives a restart.
type DBEnv struct {
	Name   string `json:"name"`   // database name
	Role   string `json:"role"`   // the colour's own login role
	Server string `json:"server"` // host:port of the server it lives on
	// Production marks the database teal first met: it was migrated in place by the first
	// release, and teal never drops it.
	Production bool `json:"production,omitempty"`
	// Version is the release version the database was prepared for.
	Version string `json:"version"`
	// HeldBack lists migrations (by version number) classified "after cutover only" that run
	// on this database once the old colour is gone.
	HeldBack []int64 `json:"held_back,omitempty"`
	// Migrations is the directory of the version's migrations, resolved at prepare time.
	Migrations string `json:"migrations,omitempty"`
}

// DBTarget says which colour's database a step works on.
type DBTarget struct {
	ReleaseID int64
	Actor     string
	Color     Color
	Version   string
	Artifact  string // unpacked artifact path, for {artifact} in database.migrations
	// Live is the live colour's database; nil on the first release, which migrates the
	// production database in place.
	Live *DBEnv
}

// DBProgress reports progress of a long database step (clone tables and bytes, lag …).
type DBProgress func(msg string, attrs map[string]any)

// DBLag is how far a colour's copy is behind the live database.
type DBLag struct {
	Bytes   int64         `json:"bytes"`   // replay lag of the subscription, in WAL bytes
	Fence   time.Duration `json:"fence"`   // round trip of the last fence row
	Checked time.Time     `json:"checked"` // when this was measured
}

// SwitchReport is the timing of one database switchover, every step measured.
type SwitchReport struct {
	Steps  []TimedStep   `json:"steps"`
	Freeze time.Duration `json:"freeze"` // from freezing the old side to opening the new one
}

// TimedStep is one step of a switchover.
type TimedStep struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration"`
}

// Database gives each colour its own copy of the live data, keeps it in sync, migrates it, and
// moves writes between colours with no acknowledged write lost.
type Database interface {
	// Preflight checks the servers before anything is created and returns one error listing
	// every problem and its fix.
	Preflight(ctx context.Context, t DBTarget) error
	// Prepare creates t.Color's database (in place on the first release), fills it and keeps
	// it in sync with t.Live, applies the version's migrations and verifies it. The returned
	// DBEnv is persisted by the caller.
	Prepare(ctx context.Context, t DBTarget, progress DBProgress) (*DBEnv, error)
	// InstanceEnv is the environment of a colour's instances: DATABASE_URL.
	InstanceEnv(ctx context.Context, env *DBEnv) (map[string]string, error)
	// Ready returns nil when the gate may open: replication caught up within max_lag and no
	// apply error; else why not.
	Ready(ctx context.Context, env *DBEnv) (DBLag, error)
	// Switchover moves writes from one colour's database to the other's, within
	// freeze_timeout: freeze from, wait until to has every write, copy sequences, reverse
	// replication, open to, and call route inside the freeze window to move traffic. On any
	// error from is unfrozen and everything is left as before.
	Switchover(ctx context.Context, from, to *DBEnv, route func(context.Context) error) (*SwitchReport, error)
	// CanSwitchBack returns nil when a switchover from live back to old would lose no write
	// (reverse replication running), else what would be lost.
	CanSwitchBack(ctx context.Context, live, old *DBEnv) error
	// ForceSwitchover is Switchover without replication (teal rollback --force when
	// CanSwitchBack refused): writes made on from since to stopped receiving them stay on
	// from only.
	ForceSwitchover(ctx context.Context, from, to *DBEnv, route func(context.Context) error) (*SwitchReport, error)
	// Reconcile brings both databases to the steady state of the recorded traffic after the
	// server died mid-switchover: live open, idle closed and in sync from live, nothing
	// replicating idle → live.
	Reconcile(ctx context.Context, live, idle *DBEnv) error
	// Teardown drops a colour's copy and its replication (a failed or aborted release).
	Teardown(ctx context.Context, env *DBEnv) error
	// Retire runs live's held-back migrations and drops old's copy and replication
	// (after keep_old_database). A Production database is never dropped.
	Retire(ctx context.Context, live, old *DBEnv) error
	// Close releases connections.
	Close() error
}
