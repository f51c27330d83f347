package artifact

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// newStore opens a store in a fresh directory <tmp>/artifacts.
func newStore(t *testing.T) *Store {
	t.Helper()
	return openStore(t, filepath.Join(tempDir(t), "artifacts"))
}

// openStore opens a store in dir.
func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s := NewStore(dir)
	if err := s.Open(t.Context()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// tempDir is t.TempDir that can also be removed when a test made parts of it read-only and
// does not run as root.
func tempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// Registered after TempDir's own cleanup, so it runs first.
	t.Cleanup(func() { _ = removeAll(dir) })
	return dir
}

// node is one thing in a test tree.
type node struct {
	path    string
	content string      // regular files
	mode    os.FileMode // regular files; 0 means 0644
	dir     bool
	link    string // symlink target
}

// makeTree creates nodes under dir, in order, with mtimes set to mtime.
func makeTree(t *testing.T, dir string, mtime time.Time, nodes ...node) {
	t.Helper()
	for _, n := range nodes {
		p := filepath.Join(dir, filepath.FromSlash(n.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case n.dir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case n.link != "":
			if err := os.Symlink(n.link, p); err != nil {
				t.Fatal(err)
			}
			continue
		default:
			mode := n.mode
			if mode == 0 {
				mode = 0o644
			}
			if err := os.WriteFile(p, []byte(n.content), mode); err != nil {
				t.Fatal(err)
			}
			// WriteFile's mode is subject to the umask.
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// tarEntry is one entry of a hand-made tar.
type tarEntry struct {
	name     string
	typ      byte
	body     string
	mode     int64
	linkname string
	size     int64 // when not 0, a header promising more than body; must come last
}

// makeTar builds a tar of entries as given, hostile ones included.
func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		size := int64(len(e.body))
		if e.size != 0 {
			size = e.size
		}
		if typ != tar.TypeReg {
			size = 0
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: mode, Linkname: e.linkname, Size: size, ModTime: time.Now()}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if typ != tar.TypeReg {
			continue
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
		if e.size != 0 {
			// The header promised more than the body: the stream ends here, truncated.
			return buf.Bytes()
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// listTree lists every path under dir, relative, slash-separated.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		paths = append(paths, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

func modeOf(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}
