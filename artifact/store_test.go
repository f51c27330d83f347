package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"teal.dev/teal"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func writeTestFile(t *testing.T, p, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStore_PushFile(t *testing.T) {
	tests := []struct {
		name     string
		mode     os.FileMode
		wantMode os.FileMode
	}{
		{"executable", 0o755, 0o555},
		{"owner exec only", 0o744, 0o555},
		{"not executable is stored as it is", 0o644, 0o444},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			src := writeTestFile(t, filepath.Join(tempDir(t), "server"), "#!/bin/sh\n", tt.mode)
			a, created, err := s.Push(t.Context(), "v1", src)
			if err != nil {
				t.Fatalf("Push: %v", err)
			}
			if !created {
				t.Fatalf("created = false, want true")
			}
			want := teal.Artifact{
				Version: "v1",
				Digest:  sha("#!/bin/sh\n"),
				Size:    int64(len("#!/bin/sh\n")),
				Kind:    KindFile,
				Path:    filepath.Join(s.dir, "unpacked", strings.TrimPrefix(sha("#!/bin/sh\n"), "sha256:"), "server"),
			}
			if a.Version != want.Version || a.Digest != want.Digest || a.Size != want.Size || a.Kind != want.Kind || a.Path != want.Path {
				t.Fatalf("Push = %+v, want %+v", *a, want)
			}
			if time.Since(a.Pushed) > time.Minute || a.Pushed.After(time.Now()) {
				t.Fatalf("Pushed = %v, want about now", a.Pushed)
			}
			if got := modeOf(t, a.Path).Perm(); got != tt.wantMode {
				t.Fatalf("mode of %s = %o, want %o", a.Path, got, tt.wantMode)
			}
			if got := modeOf(t, filepath.Dir(a.Path)).Perm(); got != 0o555 {
				t.Fatalf("mode of %s = %o, want 555", filepath.Dir(a.Path), got)
			}
			if d, err := Digest(a.Path); err != nil || d != a.Digest {
				t.Fatalf("Digest(Path) = %s, %v, want %s", d, err, a.Digest)
			}
		})
	}
}

func TestStore_PushFileUpload(t *testing.T) {
	s := newStore(t)
	a, created, err := s.PushFile(t.Context(), "v1", "", strings.NewReader("ELF"))
	if err != nil || !created {
		t.Fatalf("PushFile = %v, %v, want created", created, err)
	}
	if filepath.Base(a.Path) != DefaultFileName || a.Digest != sha("ELF") || a.Kind != KindFile {
		t.Fatalf("PushFile = %+v, want %s named %s", *a, sha("ELF"), DefaultFileName)
	}
	// The upload carries no mode, and a file artifact exists to be run.
	if got := modeOf(t, a.Path).Perm(); got != 0o555 {
		t.Fatalf("mode = %o, want 555", got)
	}
	for _, name := range []string{".", "..", "a/b", "x\x00y", strings.Repeat("n", 256)} {
		if _, _, err := s.PushFile(t.Context(), "v2", name, strings.NewReader("x")); !errors.Is(err, teal.ErrInvalid) {
			t.Fatalf("PushFile(name %q) = %v, want ErrInvalid", name, err)
		}
	}
}

func TestStore_PushDir(t *testing.T) {
	s := newStore(t)
	src := tempDir(t)
	makeTree(t, src, time.Now(), sampleTree...)
	want, err := Digest(src)
	if err != nil {
		t.Fatal(err)
	}
	a, created, err := s.Push(t.Context(), "v1", src)
	if err != nil || !created {
		t.Fatalf("Push = %v, %v, want created", created, err)
	}
	var size int64
	for _, n := range sampleTree {
		size += int64(len(n.content))
	}
	if a.Digest != want || a.Kind != KindDir || a.Size != size || a.Path != s.unpacked(want) {
		t.Fatalf("Push = %+v, want digest %s kind dir size %d path %s", *a, want, size, s.unpacked(want))
	}
	if d, err := Digest(a.Path); err != nil || d != want {
		t.Fatalf("Digest of the unpacked copy = %s, %v, want %s", d, err, want)
	}
	// Read-only: what instances run cannot be changed under them.
	modes := map[string]os.FileMode{
		".":                 0o555 | os.ModeDir,
		"bin":               0o555 | os.ModeDir,
		"bin/server":        0o555,
		"README":            0o444,
		"empty":             0o555 | os.ModeDir,
		"web/static":        0o555 | os.ModeDir,
		"web/static/app.js": 0o444,
	}
	for rel, wantMode := range modes {
		if got := modeOf(t, filepath.Join(a.Path, rel)); got != wantMode {
			t.Errorf("mode of %s = %v, want %v", rel, got, wantMode)
		}
	}
	if os.Geteuid() != 0 { // root writes anyway
		if err := os.WriteFile(filepath.Join(a.Path, "README"), []byte("changed"), 0o644); err == nil {
			t.Fatalf("writing a file of the unpacked copy succeeded, want refused")
		}
		if err := os.WriteFile(filepath.Join(a.Path, "new"), []byte("new"), 0o644); err == nil {
			t.Fatalf("adding a file to the unpacked copy succeeded, want refused")
		}
	}
	if target, err := os.Readlink(filepath.Join(a.Path, "current")); err != nil || target != "web/static" {
		t.Fatalf("current -> %q, %v, want web/static", target, err)
	}

	// The same directory as an upload: same digest, whatever the tar's order and times.
	tarred := makeTar(t,
		tarEntry{name: "./", typ: '5'},
		tarEntry{name: "./web/static/app.js", body: "console.log(1)"},
		tarEntry{name: "./bin/server", body: "#!/bin/sh\necho hi\n", mode: 0o700},
		tarEntry{name: "./empty/", typ: '5', mode: 0o700},
		tarEntry{name: "./a-b", body: "dash sorts before slash", mode: 0o600},
		tarEntry{name: "./a/z", body: "z"},
		tarEntry{name: "./current", typ: '2', linkname: "web/static"},
		tarEntry{name: "./README", body: "readme"},
	)
	b, created, err := s.PushTar(t.Context(), "v2", bytes.NewReader(tarred))
	if err != nil || !created {
		t.Fatalf("PushTar = %v, %v, want created", created, err)
	}
	if b.Digest != want || b.Path != a.Path || b.Size != a.Size {
		t.Fatalf("PushTar = %+v, want the digest, path and size of the pushed directory %+v", *b, *a)
	}
	var buf bytes.Buffer
	if err := WriteTar(&buf, src); err != nil {
		t.Fatal(err)
	}
	c, _, err := s.PushTar(t.Context(), "v3", &buf)
	if err != nil || c.Digest != want {
		t.Fatalf("PushTar(WriteTar) = %+v, %v, want digest %s", c, err, want)
	}
}

func TestStore_BindOnce(t *testing.T) {
	s := newStore(t)
	dir := tempDir(t)
	one := writeTestFile(t, filepath.Join(dir, "one"), "one", 0o755)
	two := writeTestFile(t, filepath.Join(dir, "two"), "two", 0o755)
	first, created, err := s.Push(t.Context(), "v1", one)
	if err != nil || !created {
		t.Fatalf("Push = %v, %v", created, err)
	}

	t.Run("same digest is a no-op", func(t *testing.T) {
		again, created, err := s.Push(t.Context(), "v1", one)
		if err != nil {
			t.Fatalf("Push again: %v", err)
		}
		if created {
			t.Fatalf("created = true, want false")
		}
		if *again != *first {
			t.Fatalf("Push again = %+v, want the first %+v", *again, *first)
		}
		upload, created, err := s.PushFile(t.Context(), "v1", "other", strings.NewReader("one"))
		if err != nil || created || upload.Digest != first.Digest {
			t.Fatalf("PushFile of the same bytes = %+v, %v, %v, want a no-op", upload, created, err)
		}
	})

	t.Run("different digest is refused", func(t *testing.T) {
		_, _, err := s.Push(t.Context(), "v1", two)
		if !errors.Is(err, teal.ErrConflict) {
			t.Fatalf("Push = %v, want ErrConflict", err)
		}
		for _, d := range []string{sha("one"), sha("two")} {
			if !strings.Contains(err.Error(), d) {
				t.Fatalf("error %q does not name %s", err, d)
			}
		}
		if hint := teal.HintOf(err); hint != "push it under a new version" {
			t.Fatalf("hint = %q", hint)
		}
		got, err := s.Get(t.Context(), "v1")
		if err != nil || got.Digest != first.Digest {
			t.Fatalf("Get = %+v, %v, want still %s", got, err, first.Digest)
		}
		// The refused content was never installed.
		if _, err := os.Stat(s.unpacked(sha("two"))); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stat of refused content: %v, want not exist", err)
		}
	})

	t.Run("same content under a new version is stored once", func(t *testing.T) {
		b, created, err := s.PushFile(t.Context(), "v2", "renamed", strings.NewReader("one"))
		if err != nil || !created {
			t.Fatalf("PushFile = %v, %v", created, err)
		}
		// The copy first stored, under its first name.
		if b.Path != first.Path {
			t.Fatalf("Path = %s, want %s", b.Path, first.Path)
		}
	})
}

func TestStore_ConcurrentPushes(t *testing.T) {
	tests := []struct {
		name    string
		content func(i int) string
		winners int
	}{
		{"different digests: one wins", func(i int) string { return fmt.Sprintf("build %d", i) }, 1},
		{"same digest: one binds, all agree", func(int) string { return "same build" }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(tempDir(t), "artifacts")
			// Two stores on one directory, as a server and a CLI would be.
			stores := []*Store{openStore(t, dir), openStore(t, dir)}
			const n = 8
			type result struct {
				a       *teal.Artifact
				created bool
				err     error
			}
			results := make([]result, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					a, created, err := stores[i%2].PushFile(t.Context(), "v1", "app", strings.NewReader(tt.content(i)))
					results[i] = result{a, created, err}
				})
			}
			wg.Wait()
			bound, err := stores[0].Get(t.Context(), "v1")
			if err != nil {
				t.Fatal(err)
			}
			winners := 0
			for i, r := range results {
				switch {
				case r.err == nil && r.created:
					winners++
					if r.a.Digest != bound.Digest {
						t.Fatalf("push %d won with %s, but v1 is %s", i, r.a.Digest, bound.Digest)
					}
				case r.err == nil:
					if r.a.Digest != bound.Digest {
						t.Fatalf("push %d is a no-op with %s, but v1 is %s", i, r.a.Digest, bound.Digest)
					}
				case !errors.Is(r.err, teal.ErrConflict):
					t.Fatalf("push %d: %v, want success or ErrConflict", i, r.err)
				}
			}
			if winners != tt.winners {
				t.Fatalf("%d pushes bound v1, want %d", winners, tt.winners)
			}
			if entries, err := os.ReadDir(filepath.Join(dir, "tmp")); err != nil || len(entries) != 0 {
				t.Fatalf("tmp/ holds %v (%v), want nothing", entries, err)
			}
		})
	}
}

func TestStore_Restart(t *testing.T) {
	dir := filepath.Join(tempDir(t), "artifacts")
	s := openStore(t, dir)
	src := tempDir(t)
	makeTree(t, src, time.Now(), sampleTree...)
	file := writeTestFile(t, filepath.Join(tempDir(t), "app"), "app", 0o755)
	var pushed []*teal.Artifact
	for v, p := range map[string]string{"v1": src, "v2": file} {
		a, _, err := s.Push(t.Context(), v, p)
		if err != nil {
			t.Fatal(err)
		}
		pushed = append(pushed, a)
	}
	before, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	again := openStore(t, dir)
	after, err := again.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) || len(after) != 2 {
		t.Fatalf("List after restart = %d artifacts, want %d", len(after), len(before))
	}
	for i := range after {
		b, a := before[i], after[i]
		if a.Version != b.Version || a.Digest != b.Digest || a.Size != b.Size || a.Kind != b.Kind || a.Path != b.Path || !a.Pushed.Equal(b.Pushed) {
			t.Fatalf("List[%d] after restart = %+v, want %+v", i, *a, *b)
		}
	}
	for _, p := range pushed {
		got, err := again.Get(t.Context(), p.Version)
		if err != nil {
			t.Fatalf("Get(%s): %v", p.Version, err)
		}
		if got.Digest != p.Digest || got.Path != p.Path {
			t.Fatalf("Get(%s) = %+v, want %+v", p.Version, *got, *p)
		}
		if _, created, err := again.Push(t.Context(), p.Version, map[string]string{"v1": src, "v2": file}[p.Version]); err != nil || created {
			t.Fatalf("re-push of %s after restart = %v, %v, want a no-op", p.Version, created, err)
		}
	}
}

func TestStore_List(t *testing.T) {
	s := newStore(t)
	if list, err := s.List(t.Context()); err != nil || len(list) != 0 {
		t.Fatalf("List of an empty store = %v, %v", list, err)
	}
	for _, v := range []string{"v3", "v1", "v2"} {
		if _, _, err := s.PushFile(t.Context(), v, "app", strings.NewReader(v)); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range list {
		got = append(got, a.Version)
	}
	if strings.Join(got, ",") != "v3,v1,v2" {
		t.Fatalf("List = %v, want push order v3,v1,v2", got)
	}
}

func TestStore_Get(t *testing.T) {
	s := newStore(t)
	tests := []struct {
		name    string
		version string
		want    error
	}{
		{"unknown", "v9", teal.ErrNotFound},
		{"invalid", "../v9", teal.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Get(t.Context(), tt.version); !errors.Is(err, tt.want) {
				t.Fatalf("Get(%q) = %v, want %v", tt.version, err, tt.want)
			}
		})
	}
}

func TestStore_NotOpen(t *testing.T) {
	s := NewStore(filepath.Join(tempDir(t), "artifacts"))
	if _, _, err := s.PushFile(t.Context(), "v1", "app", strings.NewReader("x")); err == nil || !strings.Contains(err.Error(), "not open") {
		t.Fatalf("PushFile before Open = %v, want a not open error", err)
	}
}

func TestStore_Refuses(t *testing.T) {
	src := tempDir(t)
	makeTree(t, src, time.Now(), node{path: "big", content: strings.Repeat("x", 100)})
	emptyDir := tempDir(t)
	tests := []struct {
		name string
		push func(s *Store) error
		want string
	}{
		{"invalid version", func(s *Store) error {
			_, _, err := s.Push(t.Context(), "-v1", src)
			return err
		}, `version "-v1"`},
		{"file over the size limit", func(s *Store) error {
			_, _, err := s.PushFile(t.Context(), "v1", "app", strings.NewReader(strings.Repeat("x", 65)))
			return err
		}, "size limit of 64 bytes"},
		{"directory over the size limit", func(s *Store) error {
			_, _, err := s.Push(t.Context(), "v1", src)
			return err
		}, "size limit of 64 bytes"},
		{"empty file", func(s *Store) error {
			_, _, err := s.PushFile(t.Context(), "v1", "app", strings.NewReader(""))
			return err
		}, "empty"},
		{"empty directory", func(s *Store) error {
			_, _, err := s.Push(t.Context(), "v1", emptyDir)
			return err
		}, "empty directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			s.MaxSize = 64
			err := tt.push(s)
			if !errors.Is(err, teal.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("push = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
			if list, err := s.List(t.Context()); err != nil || len(list) != 0 {
				t.Fatalf("List = %v, %v, want nothing stored", list, err)
			}
		})
	}
}

func TestStore_KindClash(t *testing.T) {
	// A file whose bytes are the tar of a directory has that directory's digest.
	s := newStore(t)
	src := tempDir(t)
	makeTree(t, src, time.Now(), node{path: "app", content: "app", mode: 0o755})
	var buf bytes.Buffer
	if err := WriteTar(&buf, src); err != nil {
		t.Fatal(err)
	}
	f, _, err := s.PushFile(t.Context(), "as-file", "app.tar", bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Push(t.Context(), "as-dir", src)
	if !errors.Is(err, teal.ErrConflict) || !strings.Contains(err.Error(), f.Digest) {
		t.Fatalf("Push of the directory = %v, want ErrConflict naming %s", err, f.Digest)
	}

	s = newStore(t)
	if _, _, err := s.Push(t.Context(), "as-dir", src); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.PushFile(t.Context(), "as-file", "app.tar", bytes.NewReader(buf.Bytes()))
	if !errors.Is(err, teal.ErrConflict) {
		t.Fatalf("PushFile of the tar = %v, want ErrConflict", err)
	}
}

func TestStore_OpenSweepsLeftovers(t *testing.T) {
	dir := filepath.Join(tempDir(t), "artifacts")
	s := openStore(t, dir)
	tmp := filepath.Join(dir, "tmp")

	// A push that crashed halfway through sealing: read-only parts included.
	crashed := filepath.Join(tmp, "push-crashed")
	makeTree(t, crashed, time.Now(), node{path: "obj/sub/file", content: "x"})
	for _, p := range []string{"obj/sub/file", "obj/sub"} {
		if err := os.Chmod(filepath.Join(crashed, p), 0o555); err != nil {
			t.Fatal(err)
		}
	}
	stray := writeTestFile(t, filepath.Join(tmp, "stray"), "x", 0o444)
	// A push in progress in another Store.
	live, err := newWorkDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.remove() })

	var logs bytes.Buffer
	again := NewStore(dir)
	again.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if err := again.Open(t.Context()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	for _, p := range []string{crashed, stray} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s after Open: %v, want removed", p, err)
		}
	}
	if _, err := os.Stat(live.path); err != nil {
		t.Fatalf("the live push's directory after Open: %v, want kept", err)
	}
	if !strings.Contains(logs.String(), "push-crashed") {
		t.Fatalf("log = %q, want the removal of push-crashed", logs.String())
	}
	// The store still works, and the sweep did not break the first one either.
	if _, _, err := s.PushFile(t.Context(), "v1", "app", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
}

func TestStore_OpenRefusesOtherLayout(t *testing.T) {
	dir := filepath.Join(tempDir(t), "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(dir, "layout"), "teal-artifacts 2\n", 0o644)
	err := NewStore(dir).Open(t.Context())
	if err == nil || !strings.Contains(err.Error(), "teal-artifacts 2") {
		t.Fatalf("Open = %v, want a layout error", err)
	}
}

func TestStore_Canceled(t *testing.T) {
	s := newStore(t)
	src := tempDir(t)
	makeTree(t, src, time.Now(), sampleTree...)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := s.Push(ctx, "v1", src); !errors.Is(err, context.Canceled) {
		t.Fatalf("Push = %v, want context.Canceled", err)
	}
	if _, err := s.Get(t.Context(), "v1"); !errors.Is(err, teal.ErrNotFound) {
		t.Fatalf("Get after a canceled push = %v, want ErrNotFound", err)
	}
}
