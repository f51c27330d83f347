package sampleapp

import (
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// migrationFiles are the sample app's migrations: each version ships the files of the
// versions before it and its own, as a real app's artifact does.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the migration files version ships, as a flat directory of .sql files:
// v1 (and anything below v2) ships 0001_create_orders.sql; v2 and later versions add
// 0002_add_orders_total.sql. A version not of the form vN is taken as the newest.
func Migrations(version string) fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory exists: a build without it does not compile
	}
	names, err := fs.Glob(sub, "*.sql")
	if err != nil {
		panic(err) // the pattern is valid
	}
	slices.Sort(names)
	if n, ok := versionNumber(version); ok && n < 2 {
		names = slices.DeleteFunc(names, func(name string) bool { return !strings.HasPrefix(name, "0001_") })
	}
	return &filesFS{fsys: sub, names: names}
}

// versionNumber reads N from "vN" (also "vN.x" and "vN-x").
func versionNumber(version string) (int, bool) {
	digits, ok := strings.CutPrefix(version, "v")
	if !ok {
		return 0, false
	}
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i]
	}
	n, err := strconv.Atoi(digits)
	return n, err == nil
}

// WriteMigrations writes the migrations version ships into dir/migrations, where a teal.yaml
// with the default database.migrations ({artifact}/migrations) finds them in an artifact.
func WriteMigrations(dir, version string) error {
	fsys := Migrations(version)
	out := filepath.Join(dir, "migrations")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("write migrations: %w", err)
	}
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return fmt.Errorf("write migrations: %w", err)
	}
	for _, name := range names {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return fmt.Errorf("write migrations: %w", err)
		}
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			return fmt.Errorf("write migrations: %w", err)
		}
	}
	return nil
}

// filesFS is a flat directory that shows only some files of another.
type filesFS struct {
	fsys  fs.FS
	names []string // sorted
}

// Open opens a kept file, or the directory itself as ".".
func (f *filesFS) Open(name string) (fs.File, error) {
	switch {
	case !fs.ValidPath(name):
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	case name == ".":
		entries, err := f.ReadDir(".")
		if err != nil {
			return nil, err
		}
		info, err := fs.Stat(f.fsys, ".")
		if err != nil {
			return nil, err
		}
		return &dirFile{info: info, entries: entries}, nil
	case !f.has(name):
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return f.fsys.Open(name)
}

// ReadDir lists the kept files; only "." is a directory.
func (f *filesFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		err := fs.ErrNotExist
		if f.has(name) {
			err = fs.ErrInvalid // a file, not a directory
		}
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	all, err := fs.ReadDir(f.fsys, ".")
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(all, func(e fs.DirEntry) bool { return !f.has(e.Name()) }), nil
}

func (f *filesFS) has(name string) bool {
	_, ok := slices.BinarySearch(f.names, name)
	return ok && path.Dir(name) == "."
}

// dirFile is the open root directory of a filesFS.
type dirFile struct {
	info    fs.FileInfo
	entries []fs.DirEntry
	off     int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Close() error               { return nil }

func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: ".", Err: fs.ErrInvalid}
}

// ReadDir follows fs.ReadDirFile: n > 0 reads at most n entries and io.EOF at the end.
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	rest = rest[:min(n, len(rest))]
	d.off += len(rest)
	return rest, nil
}
