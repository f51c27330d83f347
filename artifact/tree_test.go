package artifact

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"teal.dev/teal"
)

// sampleTree is a tree with every kind of entry, listed in an order that is not the sorted one.
var sampleTree = []node{
	{path: "web/static/app.js", content: "console.log(1)"},
	{path: "bin/server", content: "#!/bin/sh\necho hi\n", mode: 0o755},
	{path: "empty", dir: true},
	{path: "a-b", content: "dash sorts before slash"},
	{path: "a/z", content: "z"},
	{path: "current", link: "web/static"},
	{path: "README", content: "readme"},
}

func reversed(nodes []node) []node {
	out := make([]node, 0, len(nodes))
	for i := len(nodes) - 1; i >= 0; i-- {
		out = append(out, nodes[i])
	}
	return out
}

func TestDigest_Deterministic(t *testing.T) {
	a, b := tempDir(t), tempDir(t)
	makeTree(t, a, time.Unix(1000, 0), sampleTree...)
	makeTree(t, b, time.Now(), reversed(sampleTree)...)
	// Permission bits other than exec depend on the umask of whoever built the tree.
	if err := os.Chmod(filepath.Join(b, "README"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(b, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	da, err := Digest(a)
	if err != nil {
		t.Fatalf("Digest(a): %v", err)
	}
	db, err := Digest(b)
	if err != nil {
		t.Fatalf("Digest(b): %v", err)
	}
	if da != db {
		t.Fatalf("digests differ: %s vs %s", da, db)
	}
	if !strings.HasPrefix(da, "sha256:") || len(da) != len("sha256:")+64 {
		t.Fatalf("Digest = %q, want sha256:<64 hex>", da)
	}
	var buf bytes.Buffer
	if err := WriteTar(&buf, a); err != nil {
		t.Fatalf("WriteTar: %v", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if want := "sha256:" + hex.EncodeToString(sum[:]); da != want {
		t.Fatalf("Digest = %s, want the sha256 of WriteTar %s", da, want)
	}
}

func TestDigest_Changes(t *testing.T) {
	base := tempDir(t)
	makeTree(t, base, time.Now(), sampleTree...)
	want, err := Digest(base)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(dir string) error
	}{
		{"exec bit set", func(dir string) error { return os.Chmod(filepath.Join(dir, "README"), 0o755) }},
		{"exec bit cleared", func(dir string) error { return os.Chmod(filepath.Join(dir, "bin/server"), 0o644) }},
		{"content", func(dir string) error { return os.WriteFile(filepath.Join(dir, "a/z"), []byte("Z"), 0o644) }},
		{"empty directory added", func(dir string) error { return os.Mkdir(filepath.Join(dir, "more"), 0o755) }},
		{"symlink target", func(dir string) error {
			if err := os.Remove(filepath.Join(dir, "current")); err != nil {
				return err
			}
			return os.Symlink("web", filepath.Join(dir, "current"))
		}},
		{"rename", func(dir string) error {
			return os.Rename(filepath.Join(dir, "README"), filepath.Join(dir, "README.md"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tempDir(t)
			makeTree(t, dir, time.Now(), sampleTree...)
			if err := tt.change(dir); err != nil {
				t.Fatal(err)
			}
			got, err := Digest(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got == want {
				t.Fatalf("Digest unchanged (%s) after %s", got, tt.name)
			}
		})
	}
}

func TestDigest_File(t *testing.T) {
	p := filepath.Join(tempDir(t), "app")
	if err := os.WriteFile(p, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Digest(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("binary"))
	if want := "sha256:" + hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("Digest = %s, want %s", got, want)
	}
}

func TestWriteTar_Headers(t *testing.T) {
	dir := tempDir(t)
	makeTree(t, dir, time.Now(), sampleTree...)
	var buf bytes.Buffer
	if err := WriteTar(&buf, dir); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		typ  byte
		mode int64
	}{
		{"README", tar.TypeReg, 0o644},
		{"a-b", tar.TypeReg, 0o644},
		{"a/", tar.TypeDir, 0o755},
		{"a/z", tar.TypeReg, 0o644},
		{"bin/", tar.TypeDir, 0o755},
		{"bin/server", tar.TypeReg, 0o755},
		{"current", tar.TypeSymlink, 0o777},
		{"empty/", tar.TypeDir, 0o755},
		{"web/", tar.TypeDir, 0o755},
		{"web/static/", tar.TypeDir, 0o755},
		{"web/static/app.js", tar.TypeReg, 0o644},
	}
	tr := tar.NewReader(&buf)
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			if i != len(want) {
				t.Fatalf("%d entries, want %d", i, len(want))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(want) {
			t.Fatalf("extra entry %q", h.Name)
		}
		w := want[i]
		if h.Name != w.name || h.Typeflag != w.typ || h.Mode != w.mode {
			t.Fatalf("entry %d = %q type %c mode %o, want %q type %c mode %o", i, h.Name, h.Typeflag, h.Mode, w.name, w.typ, w.mode)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.ModTime.Unix() != 0 {
			t.Fatalf("entry %q: uid %d gid %d uname %q gname %q mtime %v, want all zero", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
	}
}

func TestWriteTar_Refuses(t *testing.T) {
	tests := []struct {
		name  string
		nodes []node
		fifo  string // a named pipe to make
		want  string // in the error
	}{
		{name: "named pipe", fifo: "pipe", want: "pipe is a named pipe"},
		{name: "symlink up", nodes: []node{{path: "l", link: "../outside"}}, want: "symlink"},
		{name: "symlink absolute", nodes: []node{{path: "l", link: "/etc/passwd"}}, want: "absolute"},
		{name: "symlink deep up", nodes: []node{{path: "a/b/l", link: "../../../x"}}, want: "a/b/l"},
		{name: "symlink through symlink", nodes: []node{
			{path: "d/l", link: ".."},
			{path: "e", link: "d/l/d/l/.."},
		}, want: "leaves the artifact"},
		{name: "symlink loop", nodes: []node{{path: "a", link: "b"}, {path: "b", link: "a"}}, want: "too many levels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tempDir(t)
			makeTree(t, dir, time.Now(), tt.nodes...)
			if tt.fifo != "" {
				if err := syscall.Mkfifo(filepath.Join(dir, tt.fifo), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteTar(io.Discard, dir)
			if !errors.Is(err, teal.ErrInvalid) {
				t.Fatalf("WriteTar = %v, want an error wrapping ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("WriteTar = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestCheckLink(t *testing.T) {
	links := map[string]string{
		"up":     "..",
		"d/l":    "..",
		"d/deep": "../a/b/c",
	}
	tests := []struct {
		name, rel, target string
		ok                bool
	}{
		{"sibling", "a/l", "b", true},
		{"parent of nested", "a/b/l", "../c", true},
		{"root", "a/l", "..", true},
		{"dot", "l", ".", true},
		{"one too many", "a/l", "../..", false},
		{"absolute", "l", "/a", false},
		{"up and back", "a/l", "../../x/../a", false},
		{"through a link to the root", "x", "d/l/d/l", true},
		{"through a link out", "x", "d/l/d/l/..", false},
		{"through a top link", "x", "up/a", false},
		{"through a deep link and back", "x", "d/deep/../../..", true},
		{"through a deep link and out", "x", "d/deep/../../../..", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkLink(links, tt.rel, tt.target)
			if (err == nil) != tt.ok {
				t.Fatalf("checkLink(%q -> %q) = %v, want ok %v", tt.rel, tt.target, err, tt.ok)
			}
		})
	}
}
