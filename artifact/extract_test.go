package artifact

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"teal.dev/teal"
)

func TestStore_PushTarHostile(t *testing.T) {
	tests := []struct {
		name    string
		tar     []byte
		want    string // in the error
		invalid bool   // the error wraps teal.ErrInvalid
	}{
		{"absolute path", makeTar(t, tarEntry{name: "/etc/cron.d/x", body: "x"}), `"/etc/cron.d/x": absolute`, true},
		{"dot dot", makeTar(t, tarEntry{name: "../x", body: "x"}), `"../x"`, true},
		{"dot dot inside", makeTar(t, tarEntry{name: "a/../../x", body: "x"}), `"a/../../x"`, true},
		{"dot dot that stays inside", makeTar(t, tarEntry{name: "a/../b", body: "x"}), `"a/../b"`, true},
		{"symlink up", makeTar(t, tarEntry{name: "l", typ: tar.TypeSymlink, linkname: "../../etc"}), `"l"`, true},
		{"symlink absolute", makeTar(t, tarEntry{name: "l", typ: tar.TypeSymlink, linkname: "/etc/passwd"}), `"l"`, true},
		{"symlink through symlink", makeTar(t,
			tarEntry{name: "d/l", typ: tar.TypeSymlink, linkname: ".."},
			tarEntry{name: "e", typ: tar.TypeSymlink, linkname: "d/l/d/l/.."},
		), `"e"`, true},
		{"write through a symlink", makeTar(t,
			tarEntry{name: "sub/", typ: tar.TypeDir},
			tarEntry{name: "l", typ: tar.TypeSymlink, linkname: "sub"},
			tarEntry{name: "l/x", body: "x"},
		), `"l/x": "l" is not a directory`, true},
		{"write through an escaping symlink", makeTar(t,
			tarEntry{name: "l", typ: tar.TypeSymlink, linkname: "../.."},
			tarEntry{name: "l/x", body: "x"},
		), `"l/x"`, true},
		{"hard link", makeTar(t, tarEntry{name: "f", body: "x"}, tarEntry{name: "h", typ: tar.TypeLink, linkname: "f"}), `"h": hard link not allowed`, true},
		{"character device", makeTar(t, tarEntry{name: "null", typ: tar.TypeChar}), `"null": character device`, true},
		{"block device", makeTar(t, tarEntry{name: "sda", typ: tar.TypeBlock}), `"sda": block device`, true},
		{"fifo", makeTar(t, tarEntry{name: "p", typ: tar.TypeFifo}), `"p": named pipe`, true},
		{"duplicate file", makeTar(t, tarEntry{name: "f", body: "x"}, tarEntry{name: "./f", body: "y"}), `"./f": duplicate`, true},
		{"file over a directory", makeTar(t, tarEntry{name: "d/f", body: "x"}, tarEntry{name: "d", body: "y"}), `"d": duplicate`, true},
		{"over the size limit", makeTar(t, tarEntry{name: "a", body: strings.Repeat("x", 40)}, tarEntry{name: "b", body: strings.Repeat("x", 40)}), `"b": the artifact is over the size limit of 64 bytes`, true},
		{"too many entries", makeTar(t, tarEntry{name: "1", body: "x"}, tarEntry{name: "2", body: "x"}, tarEntry{name: "3", body: "x"}, tarEntry{name: "4", body: "x"}, tarEntry{name: "5", body: "x"}), `"5": more than 4 entries`, true},
		{"too many implicit directories", makeTar(t, tarEntry{name: "a/b/c/d/e/f", body: "x"}), `more than 4 entries`, true},
		{"root as a file", makeTar(t, tarEntry{name: ".", body: "x"}), `names the root`, true},
		{"empty name", makeTar(t, tarEntry{name: "", typ: tar.TypeDir}), "empty name", true},
		{"empty", makeTar(t), "empty directory", true},
		{"only the root", makeTar(t, tarEntry{name: "./", typ: tar.TypeDir}), "empty directory", true},
		{"not a tar", bytes.Repeat([]byte("garbage!"), 200), "read artifact tar", true},
		{"truncated", makeTar(t, tarEntry{name: "f", body: "abc", size: 60}), `"f": the tar ends inside it`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := tempDir(t)
			s := openStore(t, filepath.Join(base, "artifacts"))
			s.MaxSize, s.MaxEntries = 64, 4
			_, _, err := s.PushTar(t.Context(), "v1", bytes.NewReader(tt.tar))
			if err == nil {
				t.Fatalf("PushTar succeeded, want an error mentioning %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("PushTar = %q, want it to mention %q", err, tt.want)
			}
			if tt.invalid && !errors.Is(err, teal.ErrInvalid) {
				t.Fatalf("PushTar = %v, want an error wrapping ErrInvalid", err)
			}
			assertNothingStored(t, base)
		})
	}
}

// assertNothingStored checks that a failed push left nothing behind, in the store or beside it.
func assertNothingStored(t *testing.T, base string) {
	t.Helper()
	got := strings.Join(listTree(t, base), " ")
	if want := ". artifacts artifacts/layout artifacts/tmp artifacts/unpacked artifacts/versions"; got != want {
		t.Fatalf("after a failed push: %s, want %s", got, want)
	}
}

func TestStore_PushTarAccepts(t *testing.T) {
	tests := []struct {
		name  string
		tar   []byte
		files map[string]os.FileMode // rel path → mode of the unpacked copy
	}{
		{"implicit directories", makeTar(t, tarEntry{name: "a/b/c", body: "c", mode: 0o750}), map[string]os.FileMode{
			"a": os.ModeDir | 0o555, "a/b": os.ModeDir | 0o555, "a/b/c": 0o555,
		}},
		{"dot slash prefix", makeTar(t, tarEntry{name: "./", typ: tar.TypeDir}, tarEntry{name: "./x", body: "x", mode: 0o600}), map[string]os.FileMode{
			"x": 0o444,
		}},
		{"directory after its contents", makeTar(t, tarEntry{name: "d/x", body: "x"}, tarEntry{name: "d/", typ: tar.TypeDir}), map[string]os.FileMode{
			"d": os.ModeDir | 0o555, "d/x": 0o444,
		}},
		{"link before its target", makeTar(t, tarEntry{name: "l", typ: tar.TypeSymlink, linkname: "d/x"}, tarEntry{name: "d/x", body: "x"}), map[string]os.FileMode{
			"l": os.ModeSymlink | 0o777, "d/x": 0o444,
		}},
		{"setuid dropped", makeTar(t, tarEntry{name: "x", body: "x", mode: 0o4755}), map[string]os.FileMode{
			"x": 0o555,
		}},
		{"long name", makeTar(t, tarEntry{name: strings.Repeat("d/", 80) + "x", body: "x"}), map[string]os.FileMode{
			strings.Repeat("d/", 80) + "x": 0o444,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			a, _, err := s.PushTar(t.Context(), "v1", bytes.NewReader(tt.tar))
			if err != nil {
				t.Fatalf("PushTar: %v", err)
			}
			for rel, want := range tt.files {
				if got := modeOf(t, filepath.Join(a.Path, rel)); got != want {
					t.Errorf("mode of %s = %v, want %v", rel, got, want)
				}
			}
			if d, err := Digest(a.Path); err != nil || d != a.Digest {
				t.Fatalf("Digest(Path) = %s, %v, want %s", d, err, a.Digest)
			}
		})
	}
}

func FuzzPushTar(f *testing.F) {
	f.Add(makeTar(f, tarEntry{name: "bin/app", body: "#!/bin/sh\n", mode: 0o755}, tarEntry{name: "cur", typ: tar.TypeSymlink, linkname: "bin"}))
	f.Add(makeTar(f, tarEntry{name: "../x", body: "x"}))
	f.Add(makeTar(f, tarEntry{name: "/x", body: "x"}))
	f.Add(makeTar(f, tarEntry{name: "l", typ: tar.TypeSymlink, linkname: ".."}, tarEntry{name: "l/x", body: "x"}))
	f.Add(makeTar(f, tarEntry{name: "d/l", typ: tar.TypeSymlink, linkname: ".."}, tarEntry{name: "e", typ: tar.TypeSymlink, linkname: "d/l/d/l/.."}))
	f.Add(makeTar(f, tarEntry{name: "h", typ: tar.TypeLink, linkname: "/etc/passwd"}))
	f.Add(makeTar(f, tarEntry{name: "f", body: "abc", size: 100}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		base := tempDir(t)
		s := openStore(t, filepath.Join(base, "artifacts"))
		s.MaxSize, s.MaxEntries = 1<<20, 100
		a, _, err := s.PushTar(t.Context(), "v1", bytes.NewReader(data))
		if err == nil {
			// What was stored is what its digest says, and re-reading it gives the same.
			if d, err := Digest(a.Path); err != nil || d != a.Digest {
				t.Fatalf("Digest(Path) = %s, %v, want %s", d, err, a.Digest)
			}
			var buf bytes.Buffer
			if err := WriteTar(&buf, a.Path); err != nil {
				t.Fatal(err)
			}
			again, created, err := s.PushTar(t.Context(), "v1", &buf)
			if err != nil || created || again.Digest != a.Digest {
				t.Fatalf("re-push of the stored tree = %v, %v, want a no-op", created, err)
			}
		}
		for _, p := range listTree(t, base) {
			if p != "." && p != "artifacts" && !strings.HasPrefix(p, "artifacts/") {
				t.Fatalf("PushTar wrote %s outside the store", p)
			}
		}
		if entries, err := os.ReadDir(filepath.Join(base, "artifacts", "tmp")); err != nil || len(entries) != 0 {
			t.Fatalf("tmp/ holds %d entries (%v) after the push, want none", len(entries), err)
		}
	})
}

var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func FuzzValidVersion(f *testing.F) {
	for _, v := range []string{"v1", "1.2.3", "a", "", ".", "..", "-v", ".v", "v/1", "v 1", "ü", strings.Repeat("a", 128), strings.Repeat("a", 129), "abc123def", "v1\x00"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		err := ValidVersion(v)
		if want := versionRE.MatchString(v); (err == nil) != want {
			t.Fatalf("ValidVersion(%q) = %v, want valid %v", v, err, want)
		}
		if err != nil {
			if !errors.Is(err, teal.ErrInvalid) {
				t.Fatalf("ValidVersion(%q) = %v, want ErrInvalid", v, err)
			}
			return
		}
		// A valid version is a safe file name in versions/.
		if name := v + ".json"; filepath.Base(name) != name || strings.HasPrefix(name, ".") {
			t.Fatalf("version %q does not make a plain file name", v)
		}
	})
}
