package postgres

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ensureFenceTable creates the fence table on db's database if it is missing. It is an
// ordinary table with a primary key, so it is published and replicated like the app's own.
func ensureFenceTable(ctx context.Context, db *pgxpool.Pool) error {
	_, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS public.`+FenceTable+` (
		id   bigserial PRIMARY KEY,
		at   timestamptz NOT NULL DEFAULT now(),
		note text
	)`)
	if err != nil {
		return fmt.Errorf("create fence table: %w", err)
	}
	return nil
}

// fence writes a fence row on sender and waits until it is visible on receiver: then every
// transaction committed on sender before it has been applied on receiver too (a subscription
// applies transactions in commit order). It returns the round trip. Byte lag
// (confirmed_flush_lsn) is not used: it moves even when nothing is pending.
func fence(ctx context.Context, sender, receiver *pgxpool.Pool) (time.Duration, error) {
	return fenceNote(ctx, sender, receiver, "fence")
}

// fenceNote is fence with the note written in the row (a switchover records what it was, so
// its time can be found later).
func fenceNote(ctx context.Context, sender, receiver *pgxpool.Pool, note string) (time.Duration, error) {
	start := time.Now()
	var id int64
	// synchronous_commit is turned on for this transaction only: a walsender sends only
	// flushed WAL, and with it off on the server the fence (and every write before it) would
	// wait for the WAL writer, up to 3 × wal_writer_delay. set_config runs inside the statement
	// and holds until its commit, so this stays one round trip.
	err := sender.QueryRow(ctx, `WITH sc AS (SELECT set_config('synchronous_commit', 'on', true))
		INSERT INTO public.`+FenceTable+` (note) SELECT $1 FROM sc RETURNING id`, note).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("fence: write: %w", err)
	}
	wait := time.Millisecond
	for {
		var there bool
		err := receiver.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM public.`+FenceTable+` WHERE id = $1)`, id).Scan(&there)
		if err != nil && ctx.Err() != nil {
			// The deadline fell during a poll rather than between two: the same outcome.
			return 0, fmt.Errorf("fence: row %d not replicated after %v: %w", id, time.Since(start).Round(time.Millisecond), ctx.Err())
		}
		if err != nil {
			return 0, fmt.Errorf("fence: wait for row %d: %w", id, err)
		}
		if there {
			return time.Since(start), nil
		}
		if err := sleep(ctx, wait); err != nil {
			return 0, fmt.Errorf("fence: row %d not replicated after %v: %w", id, time.Since(start).Round(time.Millisecond), err)
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// sequenceState is one sequence's position.
type sequenceState struct {
	schema, name string
	last         int64
	called       bool
}

// syncSequences copies the position (last_value, is_called) of every sequence of from's
// database to the sequence of the same name on to's: sequences are not replicated, and
// without this the first insert on to would reuse a key. It returns how many were copied.
// A sequence missing on to is an error naming it. from must be quiet (frozen) meanwhile.
func syncSequences(ctx context.Context, from, to *pgxpool.Pool) (int, error) {
	seqs, err := sequencesToSync(ctx, from, to)
	if err != nil {
		return 0, err
	}
	return copySequences(ctx, from, to, seqs)
}

// sequencesToSync lists from's sequences and checks that to has each of them. The list
// does not change while a switchover runs, so Switchover makes it before the freeze.
func sequencesToSync(ctx context.Context, from, to *pgxpool.Pool) ([]sequenceState, error) {
	const list = `SELECT schemaname, sequencename FROM pg_sequences
		WHERE schemaname NOT LIKE 'pg\_%' AND schemaname <> 'information_schema' ORDER BY 1, 2`
	seqs, err := listSequences(ctx, from, list)
	if err != nil {
		return nil, fmt.Errorf("sync sequences: list on source: %w", err)
	}
	have, err := listSequences(ctx, to, list)
	if err != nil {
		return nil, fmt.Errorf("sync sequences: list on target: %w", err)
	}
	exists := make(map[string]bool, len(have))
	for _, s := range have {
		exists[s.schema+"."+s.name] = true
	}
	var missing []string
	var present []sequenceState
	for _, s := range seqs {
		if exists[s.schema+"."+s.name] {
			present = append(present, s)
		} else {
			missing = append(missing, s.schema+"."+s.name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, &missingSequencesError{names: missing, present: present}
	}
	return seqs, nil
}

// missingSequencesError names the sequences of the source that the target lacks.
type missingSequencesError struct {
	names   []string
	present []sequenceState // the others
}

func (e *missingSequencesError) Error() string {
	return "sync sequences: missing on the target database: " + strings.Join(e.names, ", ")
}

// copySequences reads the position of seqs on from and sets it on to: two round trips, each
// a batch of one query per sequence.
func copySequences(ctx context.Context, from, to *pgxpool.Pool, seqs []sequenceState) (int, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	seqs = slices.Clone(seqs)
	b := &pgx.Batch{}
	for i := range seqs {
		s := &seqs[i]
		b.Queue("SELECT last_value, is_called FROM " + pgxIdent(s.schema, s.name)).QueryRow(func(r pgx.Row) error {
			return r.Scan(&s.last, &s.called)
		})
	}
	if err := from.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("sync sequences: read: %w", err)
	}
	// Never move a sequence backwards: to may have drawn further values of its own (the
	// copy's migrations write history rows), and going back would hand them out again.
	b = &pgx.Batch{}
	for _, s := range seqs {
		b.Queue(`SELECT setval($1::regclass, $2, $3) WHERE NOT EXISTS (
			SELECT 1 FROM pg_sequences WHERE schemaname = $4 AND sequencename = $5
			AND increment_by > 0 AND last_value > $2)`,
			pgxIdent(s.schema, s.name), s.last, s.called, s.schema, s.name)
	}
	if err := to.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("sync sequences: set: %w", err)
	}
	return len(seqs), nil
}

func listSequences(ctx context.Context, db *pgxpool.Pool, q string) ([]sequenceState, error) {
	rows, err := db.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	var out []sequenceState
	for rows.Next() {
		var s sequenceState
		if err := rows.Scan(&s.schema, &s.name); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
