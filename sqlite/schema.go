package sqlite

import (
	"context"
	"fmt"
)

// migrations returns the schema's versions: element i takes a database from PRAGMA
// user_version i to i+1. Append only; never edit one that has shipped.
func migrations() []string {
	return []string{schema1}
}

// schema1 is the first schema. Times are UTC RFC 3339 text with nanoseconds; NULL is an
// unset optional time. JSON columns hold what encoding/json writes for the teal type.
const schema1 = `
CREATE TABLE releases (
	-- AUTOINCREMENT: ids are monotonic and never reused, even after a delete.
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	version    TEXT NOT NULL,
	digest     TEXT NOT NULL,
	color      TEXT NOT NULL,
	from_color TEXT NOT NULL,          -- '' on a first release
	phase      TEXT NOT NULL,
	outcome    TEXT,                   -- NULL while in progress
	actor      TEXT NOT NULL,
	error      TEXT NOT NULL,
	steps      TEXT NOT NULL,          -- JSON []teal.Step
	created    TEXT NOT NULL,
	promoted   TEXT,
	switched   TEXT,
	finished   TEXT
);

CREATE TABLE events (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	release_id INTEGER REFERENCES releases (id), -- NULL for events of no release
	time       TEXT NOT NULL,
	kind       TEXT NOT NULL,
	actor      TEXT NOT NULL,
	message    TEXT NOT NULL,
	attrs      TEXT                    -- JSON object, NULL when there are none
);

CREATE INDEX events_release_id ON events (release_id, id);

-- One row: the controller's source of truth after a restart.
CREATE TABLE system (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	state TEXT NOT NULL                -- JSON teal.System
);
`

// migrate brings the schema to the newest version in one transaction, so a crash leaves it
// at the old version or the new one, and returns both versions.
func (s *Store) migrate(ctx context.Context) (from, to int, err error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("migrate schema: %w", err)
	}
	// After Commit, Rollback is a no-op; before it, the error that matters is already returned.
	defer func() { _ = tx.Rollback() }()

	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&from); err != nil {
		return 0, 0, fmt.Errorf("migrate schema: read version: %w", err)
	}
	steps := migrations()
	to = len(steps)
	if from > to {
		return from, from, fmt.Errorf("schema version %d is newer than this teal knows (%d): upgrade teal", from, to)
	}
	if from == to {
		return from, to, nil
	}
	for v := from; v < to; v++ {
		if _, err := tx.ExecContext(ctx, steps[v]); err != nil {
			return from, from, fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	// PRAGMA takes no parameters; to is an int, so formatting it in is safe. user_version
	// lives in the database header, which the transaction covers.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", to)); err != nil {
		return from, from, fmt.Errorf("migrate schema: set version %d: %w", to, err)
	}
	if err := tx.Commit(); err != nil {
		return from, from, fmt.Errorf("migrate schema to version %d: %w", to, err)
	}
	return from, to, nil
}
