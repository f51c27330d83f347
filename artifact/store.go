// Package artifact is teal's content-addressed artifact store, its equivalent of an AMI: a
// version is bound once and forever to the sha256 digest of a file or of a directory, and the
// content is kept once per digest as a read-only unpacked copy that instances run from.
//
// Layout of the store directory:
//
//	layout                   the layout version
//	versions/<version>.json  one record per version, created once with link(2)
//	unpacked/<hex>/          the read-only content of a digest: the tree of a directory
//	                         artifact, or a directory holding the one file of a file artifact
//	tmp/push-*/              pushes in progress, each locked by its process; an unlocked one
//	                         is a crash's leftover and Open removes it
//
// Everything reaches its final name by rename or link, after fsync, so a crash leaves either
// nothing or a complete object behind, plus perhaps a leftover in tmp/.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"teal.dev/teal"
)

// Defaults of the Store's fields.
const (
	// DefaultMaxSize caps the bytes of content of one artifact: 4 GiB.
	DefaultMaxSize int64 = 4 << 30
	// DefaultMaxEntries caps the files, directories and symlinks of a directory artifact.
	DefaultMaxEntries = 1 << 20
)

// DefaultFileName is the name an uploaded file is unpacked as when none is given.
const DefaultFileName = "artifact"

// Kinds of artifact, as recorded in teal.Artifact.Kind.
const (
	KindFile = "file"
	KindDir  = "dir"
)

// layout is the content of the layout file: it changes when the on-disk layout does, so that
// an older teal refuses a store it would misread.
const layout = "teal-artifacts 1\n"

// maxFileName is the longest file name of a file artifact, Linux's NAME_MAX.
const maxFileName = 255

// hintNewVersion is what a user does when a version is already bound to other content.
const hintNewVersion = "push it under a new version"

// Store is the content-addressed artifact store in one directory (<data_dir>/artifacts). It is
// safe for concurrent use, also by several processes on the same directory: binding a version
// is a link(2), which exactly one concurrent push wins.
type Store struct {
	// Logger receives a line per artifact stored and per leftover removed; nil discards.
	Logger *slog.Logger
	// MaxSize caps the bytes of content of one artifact. Default DefaultMaxSize.
	MaxSize int64
	// MaxEntries caps the entries of a directory artifact. Default DefaultMaxEntries.
	MaxEntries int

	dir    string
	opened bool
}

var _ teal.Artifacts = (*Store)(nil)

// NewStore returns a store in dir. Call Open before using it.
func NewStore(dir string) *Store {
	return &Store{dir: dir, MaxSize: DefaultMaxSize, MaxEntries: DefaultMaxEntries}
}

// record is the JSON of versions/<version>.json.
type record struct {
	Version string    `json:"version"`
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	Kind    string    `json:"kind"`
	Name    string    `json:"name,omitempty"` // the file's name, for a file artifact
	Pushed  time.Time `json:"pushed"`
}

// Open creates the store's directories, checks their layout, and removes what pushes
// interrupted by a crash left in tmp/.
func (s *Store) Open(ctx context.Context) error {
	dir, err := filepath.Abs(s.dir)
	if err != nil {
		return fmt.Errorf("open artifact store: %w", err)
	}
	s.dir = dir
	for _, d := range []string{dir, s.path("versions"), s.path("unpacked"), s.path("tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("open artifact store: %w", err)
		}
	}
	if err := s.checkLayout(); err != nil {
		return fmt.Errorf("open artifact store %s: %w", dir, err)
	}
	if err := s.sweep(ctx); err != nil {
		return fmt.Errorf("open artifact store %s: %w", dir, err)
	}
	s.opened = true
	return nil
}

// checkLayout writes the layout file of a new store, and refuses a store of another layout.
func (s *Store) checkLayout() error {
	p := s.path("layout")
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.writeLayout(p); err != nil {
			return err
		}
		data, err = os.ReadFile(p)
	}
	if err != nil {
		return err
	}
	if string(data) != layout {
		return fmt.Errorf("layout %q, want %q", strings.TrimSpace(string(data)), strings.TrimSpace(layout))
	}
	return nil
}

func (s *Store) writeLayout(p string) error {
	wd, err := newWorkDir(s.path("tmp"))
	if err != nil {
		return err
	}
	defer s.removeWorkDir(wd)
	tmp := filepath.Join(wd.path, "layout")
	if err := writeSynced(tmp, []byte(layout)); err != nil {
		return err
	}
	// Link, not rename: when two processes create the store at once, the first one's file
	// stays and both read it.
	if err := os.Link(tmp, p); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("write layout: %w", err)
	}
	return syncDir(s.dir)
}

// sweep removes the entries of tmp/ no live push holds a lock on.
func (s *Store) sweep(ctx context.Context) error {
	tmp := s.path("tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := filepath.Join(tmp, e.Name())
		if !e.IsDir() {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove leftover: %w", err)
			}
			continue
		}
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue // its push finished meanwhile
		}
		if err != nil {
			return fmt.Errorf("remove leftover: %w", err)
		}
		ok, err := lock(f)
		if err == nil && ok {
			err = removeAll(p)
			if err == nil {
				s.log().Warn("removed an interrupted push", "path", p)
			}
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("remove leftover: %w", err)
		}
	}
	return nil
}

// Push stores the file or directory at path as version. The bool reports whether the version
// was newly bound: false means the same digest was already bound to it, and nothing changed.
// A file keeps its base name and its exec bit; a file that is not executable is stored as it
// is (the provider reports it when it runs it).
func (s *Store) Push(ctx context.Context, version, path string) (*teal.Artifact, bool, error) {
	if err := s.ready(version); err != nil {
		return nil, false, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("push artifact: %w", err)
	}
	switch {
	case fi.Mode().IsRegular():
		f, err := os.Open(path)
		if err != nil {
			return nil, false, fmt.Errorf("push artifact: %w", err)
		}
		defer f.Close()
		return s.pushFile(ctx, version, filepath.Base(path), f, fi.Mode()&0o111 != 0)
	case fi.IsDir():
		return s.pushDir(ctx, version, func(root *os.Root) error {
			return copyTree(ctx, path, root, s.limits())
		})
	}
	return nil, false, invalidf("an artifact is an executable file or a directory",
		"push artifact %s: a %s is neither a file nor a directory", path, typeName(fi.Mode()))
}

// PushFile stores the bytes of r as the single-file artifact of version, unpacked as name
// (DefaultFileName when empty). The bytes carry no mode, and a file artifact exists to be run,
// so the file is made executable. The bool is as for Push.
func (s *Store) PushFile(ctx context.Context, version, name string, r io.Reader) (*teal.Artifact, bool, error) {
	if err := s.ready(version); err != nil {
		return nil, false, err
	}
	if name == "" {
		name = DefaultFileName
	}
	if err := validFileName(name); err != nil {
		return nil, false, err
	}
	return s.pushFile(ctx, version, name, r, true)
}

// PushTar stores the directory in the tar stream r as the artifact of version. The stream is
// treated as hostile (see extractTar), and the digest is computed from the unpacked tree, not
// from the uploaded bytes, so it equals the digest of pushing the same directory by path. The
// bool is as for Push.
func (s *Store) PushTar(ctx context.Context, version string, r io.Reader) (*teal.Artifact, bool, error) {
	if err := s.ready(version); err != nil {
		return nil, false, err
	}
	return s.pushDir(ctx, version, func(root *os.Root) error {
		return extractTar(ctx, r, root, s.limits())
	})
}

// Get returns the artifact bound to version, or an error wrapping teal.ErrNotFound.
func (s *Store) Get(ctx context.Context, version string) (*teal.Artifact, error) {
	if err := s.ready(version); err != nil {
		return nil, err
	}
	rec, err := s.record(version)
	if err != nil {
		return nil, err
	}
	a := s.artifact(rec)
	if _, err := os.Lstat(a.Path); err != nil {
		return nil, fmt.Errorf("artifact %s: unpacked copy: %w", version, err)
	}
	return a, nil
}

// List returns every stored artifact, oldest push first.
func (s *Store) List(ctx context.Context) ([]*teal.Artifact, error) {
	if err := s.ready(""); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(s.path("versions"))
	if err != nil {
		return nil, fmt.Errorf("list artifacts: %w", err)
	}
	var recs []record
	for _, e := range entries {
		v, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || ValidVersion(v) != nil {
			continue // not a record
		}
		rec, err := s.record(v)
		if err != nil {
			return nil, fmt.Errorf("list artifacts: %w", err)
		}
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b record) int {
		if c := a.Pushed.Compare(b.Pushed); c != 0 {
			return c
		}
		return strings.Compare(a.Version, b.Version)
	})
	list := make([]*teal.Artifact, len(recs))
	for i, rec := range recs {
		list[i] = s.artifact(rec)
	}
	return list, nil
}

// ready checks that the store is open and, unless it is "", that version is valid.
func (s *Store) ready(version string) error {
	if !s.opened {
		return fmt.Errorf("artifact store %s is not open", s.dir)
	}
	if version == "" {
		return nil
	}
	return ValidVersion(version)
}

func (s *Store) limits() limits { return limits{size: s.MaxSize, entries: s.MaxEntries} }

// pushFile stores the bytes of r as the file artifact name of version.
func (s *Store) pushFile(ctx context.Context, version, name string, r io.Reader, exec bool) (*teal.Artifact, bool, error) {
	wd, obj, err := s.newPushDir()
	if err != nil {
		return nil, false, err
	}
	defer s.removeWorkDir(wd)
	f, err := os.OpenFile(filepath.Join(obj, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("push artifact: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(ctxReader{ctx: ctx, r: r}, s.MaxSize+1))
	switch {
	case ctx.Err() != nil:
		return nil, false, ctx.Err()
	case err != nil:
		return nil, false, fmt.Errorf("read artifact %s: %w", name, err)
	case n > s.MaxSize:
		return nil, false, invalidf("", "artifact %s is over the size limit of %d bytes", name, s.MaxSize)
	case n == 0:
		return nil, false, invalidf("", "artifact %s is empty", name)
	}
	if err := f.Chmod(readOnly(exec)); err != nil {
		return nil, false, fmt.Errorf("push artifact: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, false, fmt.Errorf("push artifact: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("push artifact: %w", err)
	}
	rec := record{Version: version, Digest: digestOf(h.Sum(nil)), Size: n, Kind: KindFile, Name: name}
	return s.commit(ctx, wd, rec, 0)
}

// pushDir stores the tree fill writes into a fresh root as the directory artifact of version.
func (s *Store) pushDir(ctx context.Context, version string, fill func(*os.Root) error) (*teal.Artifact, bool, error) {
	wd, obj, err := s.newPushDir()
	if err != nil {
		return nil, false, err
	}
	defer s.removeWorkDir(wd)
	root, err := os.OpenRoot(obj)
	if err != nil {
		return nil, false, fmt.Errorf("push artifact: %w", err)
	}
	err = fill(root)
	if cerr := root.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, err
	}
	if entries, err := os.ReadDir(obj); err != nil {
		return nil, false, fmt.Errorf("push artifact: %w", err)
	} else if len(entries) == 0 {
		return nil, false, invalidf("", "artifact is an empty directory")
	}
	// The digest comes from what was written, never from the source or the upload: that is
	// what instances will run.
	digest, size, tarLen, err := digestDir(obj)
	if err != nil {
		return nil, false, err
	}
	rec := record{Version: version, Digest: digest, Size: size, Kind: KindDir}
	return s.commit(ctx, wd, rec, tarLen)
}

// commit installs the content staged in wd under its digest, unless it is there already, and
// binds rec.Version to it. tarLen is the length of a directory's tar (see existing).
func (s *Store) commit(ctx context.Context, wd *workDir, rec record, tarLen int64) (*teal.Artifact, bool, error) {
	// A version already bound is answered before the content is installed, so a refused push
	// leaves nothing behind.
	if old, err := s.record(rec.Version); err == nil {
		return s.same(old, rec)
	} else if !errors.Is(err, teal.ErrNotFound) {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err // the last moment to give up before the store changes
	}
	name, err := s.install(wd, rec, tarLen)
	if err != nil {
		return nil, false, err
	}
	rec.Name = name
	rec.Pushed = time.Now().UTC()
	return s.bind(wd, rec)
}

// install moves the content staged in wd to unpacked/<hex> and makes it read-only, unless a
// copy of that digest is there already. It returns the file name to use for a file artifact:
// that of the copy first stored.
func (s *Store) install(wd *workDir, rec record, tarLen int64) (string, error) {
	dst := s.unpacked(rec.Digest)
	name, err := s.existing(dst, rec, tarLen)
	if !errors.Is(err, fs.ErrNotExist) {
		return name, err
	}
	obj := wd.obj()
	if err := seal(obj); err != nil {
		return "", err
	}
	if err := os.Rename(obj, dst); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return s.existing(dst, rec, tarLen) // a concurrent push of the same content won
		}
		return "", fmt.Errorf("install %s: %w", rec.Digest, err)
	}
	if err := os.Chmod(dst, 0o555); err != nil {
		return "", fmt.Errorf("install %s: %w", rec.Digest, err)
	}
	if err := syncDir(s.path("unpacked")); err != nil {
		return "", fmt.Errorf("install %s: %w", rec.Digest, err)
	}
	s.log().Info("artifact stored", "digest", rec.Digest, "kind", rec.Kind, "size", rec.Size)
	return rec.Name, nil
}

// existing checks the copy of a digest already at dst, or returns an error wrapping
// fs.ErrNotExist. A file artifact's bytes can equal the tar of some directory, giving both the
// same digest, so the copy's kind is checked: a file's copy holds exactly one regular file of
// the file's size, which a directory whose tar is tarLen bytes long cannot hold (its tar has
// that file and a header).
func (s *Store) existing(dst string, rec record, tarLen int64) (string, error) {
	entries, err := os.ReadDir(dst)
	if err != nil {
		return "", err
	}
	var one fs.FileInfo // the only entry, if it is a regular file
	if len(entries) == 1 && entries[0].Type().IsRegular() {
		if one, err = entries[0].Info(); err != nil {
			return "", err
		}
	}
	name := rec.Name
	switch rec.Kind {
	case KindFile:
		if one == nil || one.Size() != rec.Size {
			return "", teal.Errorf(teal.ErrConflict, hintNewVersion,
				"digest %s is already stored as a directory artifact", rec.Digest)
		}
		name = one.Name()
	case KindImage:
		// The digest is an image's, so only another image artifact can share it.
		if one == nil || one.Name() != ImageFile {
			return "", teal.Errorf(teal.ErrConflict, hintNewVersion,
				"digest %s is already stored as a file or directory artifact", rec.Digest)
		}
		name = one.Name()
	case KindDir:
		if one != nil && one.Size() == tarLen {
			return "", teal.Errorf(teal.ErrConflict, hintNewVersion,
				"digest %s is already stored as a file artifact", rec.Digest)
		}
	}
	// A crash between the rename and the chmod of install leaves the copy writable.
	if err := os.Chmod(dst, 0o555); err != nil {
		return "", fmt.Errorf("install %s: %w", rec.Digest, err)
	}
	return name, nil
}

// bind links the record of rec.Version into versions/. The link fails if the version is
// bound already, so of concurrent pushes exactly one binds it; the others compare digests.
func (s *Store) bind(wd *workDir, rec record) (*teal.Artifact, bool, error) {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, false, fmt.Errorf("bind %s: %w", rec.Version, err)
	}
	tmp := filepath.Join(wd.path, "record.json")
	if err := writeSynced(tmp, append(data, '\n')); err != nil {
		return nil, false, fmt.Errorf("bind %s: %w", rec.Version, err)
	}
	if err := os.Link(tmp, s.recordPath(rec.Version)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			old, err := s.record(rec.Version)
			if err != nil {
				return nil, false, err
			}
			return s.same(old, rec)
		}
		return nil, false, fmt.Errorf("bind %s: %w", rec.Version, err)
	}
	if err := syncDir(s.path("versions")); err != nil {
		return nil, false, fmt.Errorf("bind %s: %w", rec.Version, err)
	}
	s.log().Info("artifact pushed", "version", rec.Version, "digest", rec.Digest)
	return s.artifact(rec), true, nil
}

// same answers a push of rec to a version already bound to old.
func (s *Store) same(old, rec record) (*teal.Artifact, bool, error) {
	if old.Digest == rec.Digest {
		return s.artifact(old), false, nil
	}
	return nil, false, teal.Errorf(teal.ErrConflict, hintNewVersion,
		"version %s is already bound to %s, refusing %s", old.Version, old.Digest, rec.Digest)
}

// record reads the record of version, or returns an error wrapping teal.ErrNotFound.
func (s *Store) record(version string) (record, error) {
	p := s.recordPath(version)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return record{}, teal.Errorf(teal.ErrNotFound, "push it first: teal artifact push PATH --version "+version,
			"artifact version %s not found", version)
	}
	if err != nil {
		return record{}, fmt.Errorf("read artifact record: %w", err)
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return record{}, fmt.Errorf("read artifact record %s: %w", p, err)
	}
	if rec.Version != version || !strings.HasPrefix(rec.Digest, "sha256:") || (rec.Kind != KindFile && rec.Kind != KindDir && rec.Kind != KindImage) {
		return record{}, fmt.Errorf("read artifact record %s: not a record of version %s", p, version)
	}
	return rec, nil
}

// artifact is the teal.Artifact of rec.
func (s *Store) artifact(rec record) *teal.Artifact {
	p := s.unpacked(rec.Digest)
	if rec.Kind == KindFile || rec.Kind == KindImage {
		p = filepath.Join(p, rec.Name)
	}
	return &teal.Artifact{
		Version: rec.Version,
		Digest:  rec.Digest,
		Size:    rec.Size,
		Kind:    rec.Kind,
		Pushed:  rec.Pushed,
		Path:    p,
	}
}

// newPushDir makes a locked work directory for a push and, in it, the empty directory the
// artifact's content is staged in (wd.obj()), which it returns too.
func (s *Store) newPushDir() (*workDir, string, error) {
	wd, err := newWorkDir(s.path("tmp"))
	if err != nil {
		return nil, "", err
	}
	obj := wd.obj()
	if err := os.Mkdir(obj, 0o755); err != nil {
		s.removeWorkDir(wd)
		return nil, "", fmt.Errorf("push artifact: %w", err)
	}
	return wd, obj, nil
}

func (s *Store) removeWorkDir(wd *workDir) {
	if err := wd.remove(); err != nil {
		// Best effort: the next Open sweeps it.
		s.log().Warn("remove work directory", "path", wd.path, "err", err)
	}
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

func (s *Store) recordPath(version string) string { return s.path("versions", version+".json") }

func (s *Store) unpacked(digest string) string {
	return s.path("unpacked", strings.TrimPrefix(digest, "sha256:"))
}

func (s *Store) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// writeSynced writes data to a new file at p and syncs it.
func writeSynced(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ValidVersion checks a version name: 1 to 128 characters of [A-Za-z0-9._-], starting with a
// letter or a digit. Versions name files in the store, so the rule also keeps them safe there.
func ValidVersion(v string) error {
	ok := len(v) > 0 && len(v) <= 128 && isAlnum(v[0])
	for i := 1; ok && i < len(v); i++ {
		c := v[i]
		ok = isAlnum(c) || c == '.' || c == '_' || c == '-'
	}
	if !ok {
		return invalidf("use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit",
			"version %q is not a valid version name", v)
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// validFileName checks the name a file artifact is unpacked as: one plain path element.
func validFileName(name string) error {
	if name == "." || name == ".." || len(name) > maxFileName || strings.ContainsAny(name, "/\x00") {
		return invalidf("give a plain file name", "artifact file name %q is not a plain file name", name)
	}
	return nil
}
