package postgres

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Verification modes (database.verify).
const (
	VerifyRowCounts = "rowcounts"
	VerifyChecksums = "checksums"
	VerifyNone      = "none"
)

const (
	// verifyRetries is how many times a table or range that differs is compared again, each
	// time behind a fresh fence: writes keep arriving while the copy is verified.
	verifyRetries = 5
	// chunkKeys is the width of a checksum range of primary keys.
	chunkKeys = 10000
	// maxRecheck caps the ranges of one table compared again one by one; more differing ranges
	// than this is a copy that differs, not writes in flight.
	maxRecheck = 200
	// movingRounds ends the retries of a table or range seen written during this many
	// comparisons: it is hot, and more rounds only prolong the verification.
	movingRounds = 2
)

// unverified reports whether table is teal's own bookkeeping, which legitimately differs
// between the live database and a copy: the fence rows verify itself writes, and the
// migration history the copy's own migrations add to.
func unverified(table string) bool {
	switch table {
	case "public." + FenceTable, "public.goose_db_version", "public.teal_migrations":
		return true
	}
	return false
}

// verify compares the copy with the live database (database.verify).
//
// A comparison is made behind a fence: the live side is read (snapshot L1), a fence row is
// written and awaited on the copy, then the copy is read. The copy then holds at least
// everything L1 saw; the same value means in sync. A table (or range) that differs is read
// again up to verifyRetries times, now as L1, fence, copy, L2: if the live side did not change
// between L1 and L2 the copy must equal it exactly, else it is a persisting difference; if it
// did change, the table is being written right now and the copy must lie between the two
// (counts) — such a table cannot be proven equal before the freeze and is logged as
// unverified (the switchover's fence covers it). Only a difference on data at rest fails.
//
//	rowcounts  count(*) per table
//	checksums  per table with a single-column integer primary key: count and the sum of
//	           hashtext(row::text) per range of chunkKeys keys, over the live side's columns
//	           only (a column a migration added on the copy is not hashed); other tables
//	           fall back to rowcounts
//	none       nothing
func (d *Database) verify(ctx context.Context, live, cp *pgxpool.Pool, mode string) error {
	switch mode {
	case VerifyNone:
		return nil
	case VerifyRowCounts, VerifyChecksums:
	default:
		return fmt.Errorf("verify: database.verify %q: want rowcounts, checksums or none", mode)
	}
	tables, err := verifyTables(ctx, live)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	var differ, hot []string
	for _, t := range tables {
		if unverified(t.name) {
			continue
		}
		var res verdict
		var detail string
		if mode == VerifyChecksums && t.pk != "" {
			res, detail, err = verifyChecksums(ctx, live, cp, t)
		} else {
			res, detail, err = verifyCount(ctx, live, cp, t.name)
		}
		if err != nil {
			return fmt.Errorf("verify %s: %w", t.name, err)
		}
		switch res {
		case verdictDiffers:
			differ = append(differ, detail)
		case verdictMoving:
			hot = append(hot, t.name)
		}
	}
	if len(hot) > 0 {
		d.log().Warn("verify: tables written during the comparison could not be proven equal yet; the switchover's fence covers them",
			"app", d.app, "tables", hot)
	}
	if len(differ) > 0 {
		return fmt.Errorf("verify (%s): the copy differs from the live database: %s", mode, strings.Join(differ, "; "))
	}
	return nil
}

// verdict is the outcome of comparing one table or range.
type verdict int

const (
	verdictSame    verdict = iota
	verdictMoving          // written during the comparison: not proven either way
	verdictDiffers         // differs on data at rest
)

// verifyTable is a live table as verify reads it.
type verifyTable struct {
	name string   // schema-qualified, quoted
	cols []string // the live side's columns, quoted, in order
	pk   string   // its single-column integer primary key, quoted, or ""
}

func verifyTables(ctx context.Context, live *pgxpool.Pool) ([]verifyTable, error) {
	rows, err := live.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname),
			array_agg(quote_ident(a.attname) ORDER BY a.attnum),
			coalesce((SELECT quote_ident(pa.attname) FROM pg_index i
				JOIN pg_attribute pa ON pa.attrelid = i.indrelid AND pa.attnum = i.indkey[0]
				WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnkeyatts = 1
				AND pa.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)), '')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE `+userTableFilter+`
		GROUP BY c.oid, n.nspname, c.relname ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	defer rows.Close()
	var out []verifyTable
	for rows.Next() {
		var t verifyTable
		if err := rows.Scan(&t.name, &t.cols, &t.pk); err != nil {
			return nil, fmt.Errorf("list tables: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func countRows(ctx context.Context, db *pgxpool.Pool, table string) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n)
	return n, err
}

// verifyCount compares count(*) of table.
func verifyCount(ctx context.Context, live, cp *pgxpool.Pool, table string) (verdict, string, error) {
	l1, err := countRows(ctx, live, table)
	if err != nil {
		return 0, "", err
	}
	if _, err := fence(ctx, live, cp); err != nil {
		return 0, "", err
	}
	c, err := countRows(ctx, cp, table)
	if err != nil {
		return 0, "", err
	}
	if c == l1 {
		return verdictSame, "", nil
	}
	var res verdict
	var detail string
	moved := 0
	for range verifyRetries {
		if l1, err = countRows(ctx, live, table); err != nil {
			return 0, "", err
		}
		if _, err := fence(ctx, live, cp); err != nil {
			return 0, "", err
		}
		if c, err = countRows(ctx, cp, table); err != nil {
			return 0, "", err
		}
		l2, err := countRows(ctx, live, table)
		if err != nil {
			return 0, "", err
		}
		switch {
		case l1 == l2 && c == l1:
			return verdictSame, "", nil
		case l1 != l2 && c >= min(l1, l2) && c <= max(l1, l2):
			if res, moved = verdictMoving, moved+1; moved == movingRounds {
				return res, "", nil
			}
		default:
			res, detail = verdictDiffers, fmt.Sprintf("%s has %d rows on the live database and %d on the copy", table, l2, c)
		}
	}
	return res, detail, nil
}

// chunkSum is one range's row count and order-independent hash.
type chunkSum struct{ rows, hash int64 }

// chunkSums computes the sums of every range of t (lo == hi: the whole table) or of [lo, hi).
func chunkSums(ctx context.Context, db *pgxpool.Pool, t verifyTable, lo, hi int64) (map[int64]chunkSum, error) {
	q := fmt.Sprintf(`SELECT floor(%[1]s::numeric / %[2]d)::bigint, count(*), coalesce(sum(hashtext(ROW(%[3]s)::text)::bigint), 0)
		FROM %[4]s`, t.pk, chunkKeys, strings.Join(t.cols, ", "), t.name)
	var args []any
	if lo != hi {
		q += fmt.Sprintf(" WHERE %s >= $1 AND %s < $2", t.pk, t.pk)
		args = []any{lo, hi}
	}
	rows, err := db.Query(ctx, q+" GROUP BY 1", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64]chunkSum{}
	for rows.Next() {
		var k int64
		var s chunkSum
		if err := rows.Scan(&k, &s.rows, &s.hash); err != nil {
			return nil, err
		}
		out[k] = s
	}
	return out, rows.Err()
}

// verifyChecksums compares t range by range; ranges that differ are compared again, alone.
func verifyChecksums(ctx context.Context, live, cp *pgxpool.Pool, t verifyTable) (verdict, string, error) {
	l1, err := chunkSums(ctx, live, t, 0, 0)
	if err != nil {
		return 0, "", err
	}
	if _, err := fence(ctx, live, cp); err != nil {
		return 0, "", err
	}
	c, err := chunkSums(ctx, cp, t, 0, 0)
	if err != nil {
		return 0, "", err
	}
	var diff []int64
	for k := range allChunks(l1, c) {
		if l1[k] != c[k] {
			diff = append(diff, k)
		}
	}
	if len(diff) == 0 {
		return verdictSame, "", nil
	}
	sort.Slice(diff, func(i, j int) bool { return diff[i] < diff[j] })
	if len(diff) > maxRecheck {
		return verdictDiffers, fmt.Sprintf("%s differs in %d ranges of %d keys of %s (first at %s >= %d)",
			t.name, len(diff), chunkKeys, t.pk, t.pk, diff[0]*chunkKeys), nil
	}

	res := verdictSame
	var differing []string
	for _, k := range diff {
		r, err := recheckChunk(ctx, live, cp, t, k)
		if err != nil {
			return 0, "", err
		}
		switch r {
		case verdictDiffers:
			res = verdictDiffers
			differing = append(differing, fmt.Sprintf("[%d, %d)", k*chunkKeys, (k+1)*chunkKeys))
		case verdictMoving:
			if res == verdictSame {
				res = verdictMoving
			}
		}
	}
	if res == verdictDiffers {
		return verdictDiffers, fmt.Sprintf("%s differs in %s ranges %s", t.name, t.pk, strings.Join(differing, ", ")), nil
	}
	return res, "", nil
}

// recheckChunk compares range k of t again, up to verifyRetries times.
func recheckChunk(ctx context.Context, live, cp *pgxpool.Pool, t verifyTable, k int64) (verdict, error) {
	lo, hi := k*chunkKeys, (k+1)*chunkKeys
	res, moved := verdictDiffers, 0
	for range verifyRetries {
		l1, err := chunkSums(ctx, live, t, lo, hi)
		if err != nil {
			return 0, err
		}
		if _, err := fence(ctx, live, cp); err != nil {
			return 0, err
		}
		c, err := chunkSums(ctx, cp, t, lo, hi)
		if err != nil {
			return 0, err
		}
		l2, err := chunkSums(ctx, live, t, lo, hi)
		if err != nil {
			return 0, err
		}
		switch {
		case l1[k] == l2[k] && c[k] == l1[k]:
			return verdictSame, nil
		case l1[k] != l2[k]:
			if res, moved = verdictMoving, moved+1; moved == movingRounds {
				return res, nil
			}
		default:
			res = verdictDiffers
		}
	}
	return res, nil
}

func allChunks(a, b map[int64]chunkSum) map[int64]bool {
	out := make(map[int64]bool, len(a))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// hotTables lists, before a switchover's freeze, the tables whose last key range the freeze
// window verifies (database.verify: checksums): those with a single-column integer key.
func hotTables(ctx context.Context, from *pgxpool.Pool) ([]verifyTable, error) {
	all, err := verifyTables(ctx, from)
	if err != nil {
		return nil, err
	}
	var out []verifyTable
	for _, t := range all {
		if t.pk != "" && !unverified(t.name) {
			out = append(out, t)
		}
	}
	return out, nil
}

// verifyHot compares, inside the freeze window (nothing writes, and the fence has arrived), the
// last key range of each table: where the newest rows are, the ranges written while the copy
// was verified before the gate. An index range scan per table keeps it to milliseconds.
func verifyHot(ctx context.Context, from, to *pgxpool.Pool, tables []verifyTable) error {
	var differ []string
	for _, t := range tables {
		var top *int64
		if err := from.QueryRow(ctx, "SELECT max("+t.pk+") FROM "+t.name).Scan(&top); err != nil {
			return fmt.Errorf("verify %s: %w", t.name, err)
		}
		if top == nil {
			continue // empty
		}
		lo := (*top / chunkKeys) * chunkKeys
		if *top < 0 {
			lo -= chunkKeys
		}
		a, err := chunkSums(ctx, from, t, lo, lo+chunkKeys)
		if err != nil {
			return fmt.Errorf("verify %s: %w", t.name, err)
		}
		b, err := chunkSums(ctx, to, t, lo, lo+chunkKeys)
		if err != nil {
			return fmt.Errorf("verify %s: %w", t.name, err)
		}
		for k := range allChunks(a, b) {
			if a[k] != b[k] {
				differ = append(differ, fmt.Sprintf("%s keys %d..%d: %d rows vs %d", t.name, lo, lo+chunkKeys-1, a[k].rows, b[k].rows))
			}
		}
	}
	if len(differ) > 0 {
		return fmt.Errorf("verify last ranges: the new side differs: %s", strings.Join(differ, "; "))
	}
	return nil
}
