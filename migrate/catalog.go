package migrate

import (
	"context"
	"database/sql"
	"fmt"
)

// loadCatalog reads the user tables, their columns' types and their constraints, which the
// classifier needs to judge a type change or a dropped constraint on an existing table.
func loadCatalog(ctx context.Context, db *sql.DB) (*catalog, error) {
	cat := &catalog{
		tables:      make(map[string]bool),
		columns:     make(map[string]string),
		constraints: make(map[string]byte),
	}
	const userTables = `c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'`
	rows, err := db.QueryContext(ctx, `SELECT n.nspname, c.relname, coalesce(a.attname, ''), coalesce(format_type(a.atttypid, a.atttypmod), '')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE `+userTables)
	if err != nil {
		return nil, fmt.Errorf("read schema: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var schema, table, col, typ string
		if err := rows.Scan(&schema, &table, &col, &typ); err != nil {
			return nil, fmt.Errorf("read schema: %w", err)
		}
		cat.tables[schema+"."+table] = true
		if col != "" {
			cat.columns[schema+"."+table+"."+col] = typ
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema: %w", err)
	}
	rows, err = db.QueryContext(ctx, `SELECT n.nspname, c.relname, k.conname, k.contype::text
		FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE `+userTables)
	if err != nil {
		return nil, fmt.Errorf("read constraints: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var schema, table, name, kind string
		if err := rows.Scan(&schema, &table, &name, &kind); err != nil {
			return nil, fmt.Errorf("read constraints: %w", err)
		}
		if kind != "" {
			cat.constraints[schema+"."+table+"."+name] = kind[0]
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read constraints: %w", err)
	}
	return cat, nil
}
