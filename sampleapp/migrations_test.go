package sampleapp

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestMigrations(t *testing.T) {
	tests := []struct {
		version string
		want    []string
	}{
		{"v1", []string{"0001_create_orders.sql"}},
		{"v0", []string{"0001_create_orders.sql"}},
		{"v2", []string{"0001_create_orders.sql", "0002_add_orders_total.sql"}},
		{"v10", []string{"0001_create_orders.sql", "0002_add_orders_total.sql"}},
		{"v2-rc1", []string{"0001_create_orders.sql", "0002_add_orders_total.sql"}},
		{"v1.5", []string{"0001_create_orders.sql"}},
		{"3f2a9c1", []string{"0001_create_orders.sql", "0002_add_orders_total.sql"}},
		{"", []string{"0001_create_orders.sql", "0002_add_orders_total.sql"}},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			fsys := Migrations(tt.version)
			// TestFS checks the whole fs.FS contract: Open, ReadDir, Stat, Glob, and that
			// the files listed are all there is.
			if err := fstest.TestFS(fsys, tt.want...); err != nil {
				t.Fatal(err)
			}
			entries, err := fs.ReadDir(fsys, ".")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Name())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Migrations(%q) = %v, want %v", tt.version, got, tt.want)
			}
		})
	}
	t.Run("hidden file", func(t *testing.T) {
		if _, err := fs.ReadFile(Migrations("v1"), "0002_add_orders_total.sql"); err == nil {
			t.Fatal("v1 opens 0002_add_orders_total.sql, want not found")
		}
	})
}

func TestMigrations_Content(t *testing.T) {
	tests := []struct {
		name string
		want string
	}{
		{"0001_create_orders.sql", "CREATE TABLE orders"},
		{"0002_add_orders_total.sql", "ALTER TABLE orders ADD COLUMN total_cents bigint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := fs.ReadFile(Migrations("v2"), tt.name)
			if err != nil {
				t.Fatal(err)
			}
			s := string(b)
			up := strings.Index(s, "-- +goose Up")
			down := strings.Index(s, "-- +goose Down")
			if up < 0 || down < up || !strings.Contains(s[up:down], tt.want) {
				t.Fatalf("%s = %q, want %q in its goose Up section", tt.name, s, tt.want)
			}
		})
	}
}

func TestWriteMigrations(t *testing.T) {
	dir := t.TempDir()
	if err := WriteMigrations(dir, "v2"); err != nil {
		t.Fatal(err)
	}
	// Writing again, for another version, replaces the files it ships.
	if err := WriteMigrations(dir, "v2"); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "migrations"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		got, err := os.ReadFile(filepath.Join(dir, "migrations", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		want, err := fs.ReadFile(Migrations("v2"), e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("%s = %q, want %q", e.Name(), got, want)
		}
	}
	if want := []string{"0001_create_orders.sql", "0002_add_orders_total.sql"}; !slices.Equal(names, want) {
		t.Fatalf("written = %v, want %v", names, want)
	}
	if err := WriteMigrations(filepath.Join(dir, "migrations", "0001_create_orders.sql"), "v1"); err == nil {
		t.Fatal("WriteMigrations into a file = nil, want an error")
	}
}

// FuzzMigrations checks that every version ships the first migration, as a valid directory.
func FuzzMigrations(f *testing.F) {
	for _, v := range []string{"v1", "v2", "v10", "v", "v-1", "v99999999999999999999", "abc", ""} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, version string) {
		entries, err := fs.ReadDir(Migrations(version), ".")
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) == 0 || entries[0].Name() != "0001_create_orders.sql" {
			t.Fatalf("Migrations(%q) = %v, want 0001_create_orders.sql first", version, entries)
		}
	})
}
