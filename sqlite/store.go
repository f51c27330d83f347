// Package sqlite is teal's embedded state store: releases, events and the system state in one
// SQLite database (<data_dir>/teal.db), through the pure-Go driver modernc.org/sqlite.
//
// The database runs in WAL mode with synchronous=FULL, so a write that has returned survives
// SIGKILL of the server and loss of power. Writes go through a single connection, which
// serialises them; reads use a small pool of read-only connections, so the API can read while
// the controller writes.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	msqlite "modernc.org/sqlite"

	"teal.dev/teal"
)

var _ teal.Store = (*Store)(nil)

// Defaults of the Store's tunables.
const (
	// DefaultBusyTimeout is how long a statement waits for a lock another connection or
	// process holds before it fails with "database is locked".
	DefaultBusyTimeout = 5 * time.Second
	// DefaultMaxReaders is the number of read-only connections.
	DefaultMaxReaders = 4
	// DefaultReleasesLimit is how many releases Releases returns when asked for limit ≤ 0.
	DefaultReleasesLimit = 20
)

// Store is the SQLite implementation of teal.Store. It is safe for concurrent use by many
// goroutines once Open has returned.
type Store struct {
	// Logger receives the store's few messages (opening, schema migrations); nil discards.
	Logger *slog.Logger
	// BusyTimeout is how long a statement waits for a lock; = DefaultBusyTimeout.
	BusyTimeout time.Duration
	// MaxReaders is the number of read-only connections; = DefaultMaxReaders.
	MaxReaders int

	path string
	// w is the only connection that writes: one connection serialises writers inside the
	// process, so they never race each other for SQLite's write lock.
	w *sql.DB
	// r holds read-only connections; in WAL mode they read the last committed state without
	// waiting for the writer.
	r *sql.DB
}

// NewStore returns a Store for the database file at path, normally <data_dir>/teal.db. Call
// Open before using it.
func NewStore(path string) *Store {
	return &Store{
		BusyTimeout: DefaultBusyTimeout,
		MaxReaders:  DefaultMaxReaders,
		path:        path,
	}
}

// Open opens (creating if needed) the database file and its directory, and creates or
// migrates the schema.
func (s *Store) Open(ctx context.Context) (err error) {
	if s.w != nil {
		return fmt.Errorf("open state store %s: already open", s.path)
	}
	if s.path == "" {
		return errors.New("open state store: no path")
	}
	if s.MaxReaders < 1 {
		return fmt.Errorf("open state store %s: max readers %d is under 1", s.path, s.MaxReaders)
	}
	if s.BusyTimeout < 0 {
		return fmt.Errorf("open state store %s: busy timeout %v is negative", s.path, s.BusyTimeout)
	}
	path, err := filepath.Abs(s.path)
	if err != nil {
		return fmt.Errorf("open state store %s: %w", s.path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("open state store %s: %w", s.path, err)
	}

	defer func() {
		if err != nil {
			s.closeDBs()
			s.w, s.r = nil, nil
		}
	}()

	busy := strconv.FormatInt(s.BusyTimeout.Milliseconds(), 10)
	// _txlock=immediate takes the write lock at BEGIN, so a transaction that reads before it
	// writes (the migration) cannot fail half-way on a lock upgrade.
	s.w, err = openDB(path, url.Values{
		"_busy_timeout": {busy},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_foreign_keys": {"1"},
		"_txlock":       {"immediate"},
	}, 1)
	if err != nil {
		return fmt.Errorf("open state store %s: %w", s.path, err)
	}
	// journal_mode=WAL quietly stays on the old mode where WAL is impossible (a file system
	// without shared memory); the durability and read concurrency promised above need WAL.
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("open state store %s: %w", s.path, err)
	}
	if mode != "wal" {
		return fmt.Errorf("open state store %s: journal mode is %q, want wal", s.path, mode)
	}
	from, to, err := s.migrate(ctx)
	if err != nil {
		return fmt.Errorf("open state store %s: %w", s.path, err)
	}
	if from != to {
		s.logger().Info("migrated state store", "path", s.path, "from", from, "to", to)
	}

	// The readers are opened only now: the file, its WAL mode and its schema exist.
	s.r, err = openDB(path, url.Values{
		"_busy_timeout": {busy},
		"_foreign_keys": {"1"},
		"_query_only":   {"1"},
	}, s.MaxReaders)
	if err != nil {
		return fmt.Errorf("open state store %s: readers: %w", s.path, err)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("open state store %s: readers: %w", s.path, err)
	}
	s.logger().Debug("opened state store", "path", s.path, "schema", to)
	return nil
}

// Close closes the database; a second Close does nothing. Every write that returned is
// already on disk, so Close only releases resources. A closed Store cannot be reopened.
func (s *Store) Close() error {
	if s.w == nil {
		return nil
	}
	return s.closeDBs()
}

// closeDBs closes readers before the writer, so the writer's close, the last one, can
// checkpoint the WAL into the database file; it keeps the first error.
func (s *Store) closeDBs() error {
	var first error
	for _, db := range []*sql.DB{s.r, s.w} {
		if db == nil {
			continue
		}
		if err := db.Close(); err != nil && first == nil {
			first = fmt.Errorf("close state store %s: %w", s.path, err)
		}
	}
	return first
}

func (s *Store) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return s.Logger
}

// openDB opens a pool of at most conns connections to the file at path; params are the
// driver's per-connection settings, applied to every connection it opens.
func openDB(path string, params url.Values, conns int) (*sql.DB, error) {
	// A file: URI with the path escaped, so a '?' or '#' in a directory name stays part of
	// the path instead of starting the parameters.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + params.Encode()
	connector, err := msqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	// Connections live as long as the Store: reopening one costs a file open and the
	// pragmas, for nothing.
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}
