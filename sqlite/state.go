package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"teal.dev/teal"
)

// releaseColumns are the columns scanRelease reads, in its order.
const releaseColumns = `id, version, digest, color, from_color, phase, outcome, actor, error, steps,
	created, promoted, switched, finished`

// CreateRelease stores a new release and assigns r.ID; any ID r had is ignored. Ids are
// monotonic and never reused.
func (s *Store) CreateRelease(ctx context.Context, r *teal.Release) error {
	row, err := releaseRow(r)
	if err != nil {
		return fmt.Errorf("create release %s: %w", r.Version, err)
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO releases (version, digest, color, from_color,
		phase, outcome, actor, error, steps, created, promoted, switched, finished)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, row...)
	if err != nil {
		return fmt.Errorf("create release %s: %w", r.Version, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("create release %s: %w", r.Version, err)
	}
	r.ID = id
	return nil
}

// UpdateRelease replaces every field of the stored release r.ID with r's, in one statement.
// It returns an error wrapping teal.ErrNotFound if there is no such release.
func (s *Store) UpdateRelease(ctx context.Context, r *teal.Release) error {
	row, err := releaseRow(r)
	if err != nil {
		return fmt.Errorf("update release %d: %w", r.ID, err)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE releases SET version = ?, digest = ?, color = ?,
		from_color = ?, phase = ?, outcome = ?, actor = ?, error = ?, steps = ?, created = ?,
		promoted = ?, switched = ?, finished = ?
		WHERE id = ?`, append(row, r.ID)...)
	if err != nil {
		return fmt.Errorf("update release %d: %w", r.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update release %d: %w", r.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("update release %d: %w", r.ID, teal.ErrNotFound)
	}
	return nil
}

// Release returns the release with the given id, or an error wrapping teal.ErrNotFound.
func (s *Store) Release(ctx context.Context, id int64) (*teal.Release, error) {
	row := s.r.QueryRowContext(ctx, `SELECT `+releaseColumns+` FROM releases WHERE id = ?`, id)
	r, err := scanRelease(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("release %d: %w", id, teal.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read release %d: %w", id, err)
	}
	return r, nil
}

// Releases returns up to limit releases, newest (highest id) first; limit ≤ 0 means
// DefaultReleasesLimit.
func (s *Store) Releases(ctx context.Context, limit int) ([]*teal.Release, error) {
	if limit <= 0 {
		limit = DefaultReleasesLimit
	}
	rows, err := s.r.QueryContext(ctx,
		`SELECT `+releaseColumns+` FROM releases ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("read releases: %w", err)
	}
	defer rows.Close()
	var rs []*teal.Release
	for rows.Next() {
		r, err := scanRelease(rows)
		if err != nil {
			return nil, fmt.Errorf("read releases: %w", err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read releases: %w", err)
	}
	return rs, nil
}

// AddEvent stores e and assigns e.ID. e.ReleaseID 0 means the event belongs to no release;
// an id of a release that does not exist is an error wrapping teal.ErrNotFound.
func (s *Store) AddEvent(ctx context.Context, e *teal.Event) error {
	t, err := formatTime(e.Time)
	if err != nil {
		return fmt.Errorf("add event %q: %w", e.Message, err)
	}
	var attrs sql.NullString
	if len(e.Attrs) > 0 {
		b, err := json.Marshal(e.Attrs)
		if err != nil {
			return fmt.Errorf("add event %q: attrs: %w", e.Message, err)
		}
		attrs = sql.NullString{String: string(b), Valid: true}
	}
	releaseID := sql.NullInt64{Int64: e.ReleaseID, Valid: e.ReleaseID != 0}
	res, err := s.w.ExecContext(ctx, `INSERT INTO events (release_id, time, kind, actor, message, attrs)
		VALUES (?, ?, ?, ?, ?, ?)`, releaseID, t, e.Kind, e.Actor, e.Message, attrs)
	var serr *msqlite.Error
	if errors.As(err, &serr) && serr.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY {
		return fmt.Errorf("add event %q: release %d: %w", e.Message, e.ReleaseID, teal.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("add event %q: %w", e.Message, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("add event %q: %w", e.Message, err)
	}
	e.ID = id
	return nil
}

// Events returns the events of release releaseID in the order they were added, oldest first.
// releaseID 0 returns the events that belong to no release.
func (s *Store) Events(ctx context.Context, releaseID int64) ([]*teal.Event, error) {
	const columns = `id, release_id, time, kind, actor, message, attrs`
	var (
		rows *sql.Rows
		err  error
	)
	if releaseID == 0 {
		rows, err = s.r.QueryContext(ctx,
			`SELECT `+columns+` FROM events WHERE release_id IS NULL ORDER BY id`)
	} else {
		rows, err = s.r.QueryContext(ctx,
			`SELECT `+columns+` FROM events WHERE release_id = ? ORDER BY id`, releaseID)
	}
	if err != nil {
		return nil, fmt.Errorf("read events of release %d: %w", releaseID, err)
	}
	defer rows.Close()
	var es []*teal.Event
	for rows.Next() {
		var (
			e     teal.Event
			rid   sql.NullInt64
			t     string
			attrs sql.NullString
		)
		if err := rows.Scan(&e.ID, &rid, &t, &e.Kind, &e.Actor, &e.Message, &attrs); err != nil {
			return nil, fmt.Errorf("read events of release %d: %w", releaseID, err)
		}
		e.ReleaseID = rid.Int64
		if e.Time, err = parseTime(t); err != nil {
			return nil, fmt.Errorf("read event %d: %w", e.ID, err)
		}
		if attrs.Valid {
			if err := json.Unmarshal([]byte(attrs.String), &e.Attrs); err != nil {
				return nil, fmt.Errorf("read event %d: attrs: %w", e.ID, err)
			}
		}
		es = append(es, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events of release %d: %w", releaseID, err)
	}
	return es, nil
}

// System returns the saved system state, or an empty one (no live colour, no traffic, an
// empty non-nil Environments map) when none was saved.
func (s *Store) System(ctx context.Context) (*teal.System, error) {
	var state string
	err := s.r.QueryRowContext(ctx, `SELECT state FROM system WHERE id = 1`).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return &teal.System{Environments: make(map[teal.Color]*teal.Environment)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read system state: %w", err)
	}
	var sys teal.System
	if err := json.Unmarshal([]byte(state), &sys); err != nil {
		return nil, fmt.Errorf("read system state: %w", err)
	}
	if sys.Environments == nil {
		sys.Environments = make(map[teal.Color]*teal.Environment)
	}
	return &sys, nil
}

// SaveSystem replaces the saved system state with sys, in one statement.
func (s *Store) SaveSystem(ctx context.Context, sys *teal.System) error {
	if sys == nil {
		return errors.New("save system state: nil system")
	}
	b, err := json.Marshal(utcSystem(sys))
	if err != nil {
		return fmt.Errorf("save system state: %w", err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO system (id, state) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state`, string(b)); err != nil {
		return fmt.Errorf("save system state: %w", err)
	}
	return nil
}

// releaseRow returns r's column values in the order of the INSERT and UPDATE statements:
// every column but id.
func releaseRow(r *teal.Release) ([]any, error) {
	var outcome sql.NullString
	if r.Outcome != nil {
		outcome = sql.NullString{String: string(*r.Outcome), Valid: true}
	}
	steps := make([]teal.Step, len(r.Steps))
	for i, st := range r.Steps {
		st.Started = st.Started.UTC()
		st.Finished = utcPtr(st.Finished)
		steps[i] = st
	}
	if r.Steps == nil {
		steps = nil // stored as JSON null, so nil comes back nil and empty comes back empty
	}
	stepsJSON, err := json.Marshal(steps)
	if err != nil {
		return nil, fmt.Errorf("steps: %w", err)
	}
	created, err := formatTime(r.Created)
	if err != nil {
		return nil, fmt.Errorf("created: %w", err)
	}
	var times [3]sql.NullString
	for i, t := range []*time.Time{r.Promoted, r.Switched, r.Finished} {
		if t == nil {
			continue
		}
		v, err := formatTime(*t)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", [...]string{"promoted", "switched", "finished"}[i], err)
		}
		times[i] = sql.NullString{String: v, Valid: true}
	}
	return []any{r.Version, r.Digest, string(r.Color), string(r.From), string(r.Phase), outcome,
		r.Actor, r.Error, string(stepsJSON), created, times[0], times[1], times[2]}, nil
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// scanRelease reads one row of releaseColumns.
func scanRelease(row scanner) (*teal.Release, error) {
	var (
		r                            teal.Release
		color, from, phase, steps    string
		created                      string
		outcome                      sql.NullString
		promoted, switched, finished sql.NullString
	)
	if err := row.Scan(&r.ID, &r.Version, &r.Digest, &color, &from, &phase, &outcome, &r.Actor,
		&r.Error, &steps, &created, &promoted, &switched, &finished); err != nil {
		return nil, err
	}
	r.Color, r.From, r.Phase = teal.Color(color), teal.Color(from), teal.Phase(phase)
	if outcome.Valid {
		o := teal.Outcome(outcome.String)
		r.Outcome = &o
	}
	if err := json.Unmarshal([]byte(steps), &r.Steps); err != nil {
		return nil, fmt.Errorf("release %d: steps: %w", r.ID, err)
	}
	var err error
	if r.Created, err = parseTime(created); err != nil {
		return nil, fmt.Errorf("release %d: created: %w", r.ID, err)
	}
	for _, f := range []struct {
		name string
		col  sql.NullString
		dst  **time.Time
	}{
		{"promoted", promoted, &r.Promoted},
		{"switched", switched, &r.Switched},
		{"finished", finished, &r.Finished},
	} {
		if !f.col.Valid {
			continue
		}
		t, err := parseTime(f.col.String)
		if err != nil {
			return nil, fmt.Errorf("release %d: %s: %w", r.ID, f.name, err)
		}
		*f.dst = &t
	}
	return &r, nil
}

// formatTime encodes t as the store keeps every time: UTC RFC 3339 with nanoseconds, which
// parseTime reads back Equal to t. Years outside 0–9999 have no RFC 3339 form.
func formatTime(t time.Time) (string, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return "", fmt.Errorf("time %v: year outside 0..9999", t)
	}
	return t.UTC().Format(time.RFC3339Nano), nil
}

// parseTime decodes a time formatTime encoded; the result is in UTC.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// utcPtr returns a copy of *t in UTC, or nil.
func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// utcSystem returns a copy of sys with every time in UTC, so the stored JSON, like the
// columns, has times in one zone and the caller's value is left alone.
func utcSystem(sys *teal.System) *teal.System {
	c := *sys
	if sys.Environments == nil {
		return &c
	}
	c.Environments = make(map[teal.Color]*teal.Environment, len(sys.Environments))
	for color, env := range sys.Environments {
		if env == nil {
			c.Environments[color] = nil
			continue
		}
		e := *env
		e.Since = e.Since.UTC()
		e.RetireAt = utcPtr(e.RetireAt)
		if env.Instances != nil {
			e.Instances = make([]teal.Instance, len(env.Instances))
			for i, in := range env.Instances {
				in.Started = in.Started.UTC()
				e.Instances[i] = in
			}
		}
		c.Environments[color] = &e
	}
	return &c
}
