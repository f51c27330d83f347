package artifact

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"teal.dev/teal"
)

// The modes written into the deterministic tar. Only the exec bit of a regular file survives
// from the disk: permissions otherwise depend on the pusher's umask, and two pushes of the same
// tree from two machines must give the same digest.
const (
	tarDirMode  = 0o755
	tarExecMode = 0o755
	tarFileMode = 0o644
	tarLinkMode = 0o777
)

// maxLinkHops bounds symlink resolution, like the kernel's limit on nested links.
const maxLinkHops = 40

// entry is one member of a directory artifact.
type entry struct {
	rel    string // slash-separated, relative to the root, no trailing slash
	kind   byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	exec   bool   // regular files: any exec bit set
	size   int64  // regular files
	target string // symlinks
}

// name is the entry's name in the tar: directories end in a slash, as tar(1) writes them.
func (e entry) name() string {
	if e.kind == tar.TypeDir {
		return e.rel + "/"
	}
	return e.rel
}

// header is the entry's deterministic tar header: no owner, no times, perm bits only.
func (e entry) header() *tar.Header {
	h := &tar.Header{
		Name:     e.name(),
		Typeflag: e.kind,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	}
	switch e.kind {
	case tar.TypeDir:
		h.Mode = tarDirMode
	case tar.TypeSymlink:
		h.Mode = tarLinkMode
		h.Linkname = e.target
	default:
		h.Mode = tarFileMode
		if e.exec {
			h.Mode = tarExecMode
		}
		h.Size = e.size
	}
	return h
}

// Digest returns "sha256:<hex>" of the file at path, or of WriteTar of the directory at path.
// A symlink at path itself is followed.
func Digest(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("digest: %w", err)
	}
	h := sha256.New()
	switch {
	case fi.Mode().IsRegular():
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("digest: %w", err)
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return "", fmt.Errorf("digest %s: %w", path, err)
		}
	case fi.IsDir():
		if err := WriteTar(h, path); err != nil {
			return "", fmt.Errorf("digest: %w", err)
		}
	default:
		return "", invalidf("", "digest %s: a %s is neither a file nor a directory", path, typeName(fi.Mode()))
	}
	return digestOf(h.Sum(nil)), nil
}

// WriteTar writes the deterministic tar of the directory dir to w: entries sorted by path,
// owner 0 without names, zero times, modes 0755 (directories, executables), 0644 (other
// files) and 0777 (symlinks). It refuses anything but regular files, directories and
// symlinks whose targets stay inside dir, naming the offending path. A symlink at dir itself
// is followed.
func WriteTar(w io.Writer, dir string) error {
	entries, err := scan(dir)
	if err != nil {
		return err
	}
	return writeTar(w, dir, entries)
}

// digestDir returns the digest of the directory dir, the bytes of its regular files and the
// length of its tar.
func digestDir(dir string) (digest string, size, tarLen int64, err error) {
	entries, err := scan(dir)
	if err != nil {
		return "", 0, 0, err
	}
	h := sha256.New()
	cw := &countWriter{w: h}
	if err := writeTar(cw, dir, entries); err != nil {
		return "", 0, 0, err
	}
	for _, e := range entries {
		size += e.size
	}
	return digestOf(h.Sum(nil)), size, cw.n, nil
}

func writeTar(w io.Writer, dir string, entries []entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if err := tw.WriteHeader(e.header()); err != nil {
			return fmt.Errorf("tar %s: %w", e.rel, err)
		}
		if e.kind != tar.TypeReg {
			continue
		}
		if err := copyFileTo(tw, filepath.Join(dir, filepath.FromSlash(e.rel)), e.size); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	return nil
}

// copyFileTo copies exactly size bytes of the file at p to w: the tar header already promised
// that many.
func copyFileTo(w io.Writer, p string, size int64) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, size); err != nil {
		if err == io.EOF {
			return fmt.Errorf("tar %s: file shrank while being read", p)
		}
		return fmt.Errorf("tar %s: %w", p, err)
	}
	return nil
}

// scan lists the tree under dir, sorted by tar name, and checks that it holds only regular
// files, directories and symlinks that resolve inside dir.
func scan(dir string) ([]entry, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	var entries []entry
	links := make(map[string]string)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			if !d.IsDir() {
				return invalidf("", "%s is not a directory", dir)
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e := entry{rel: filepath.ToSlash(rel)}
		switch t := d.Type(); {
		case t.IsDir():
			e.kind = tar.TypeDir
		case t.IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			e.kind, e.exec, e.size = tar.TypeReg, fi.Mode()&0o111 != 0, fi.Size()
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.kind, e.target = tar.TypeSymlink, target
			links[e.rel] = target
		default:
			return invalidf("only regular files, directories and symlinks can be in an artifact",
				"%s is a %s", filepath.Join(dir, rel), typeName(t))
		}
		entries = append(entries, e)
		return nil
	})
	var invalid *teal.Error
	if errors.As(err, &invalid) {
		return nil, err // it names the path already
	}
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	for _, rel := range slices.Sorted(maps.Keys(links)) {
		target := links[rel]
		if err := checkLink(links, rel, target); err != nil {
			return nil, invalidf("symlinks in an artifact must stay inside it",
				"symlink %s -> %s: %v", filepath.Join(dir, filepath.FromSlash(rel)), target, err)
		}
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name(), b.name()) })
	return entries, nil
}

// checkLink resolves the symlink at rel, whose target is target, through the other symlinks of
// the tree (links, by slash path relative to the root) and fails if any step of the
// resolution leaves the root. Names that do not exist or are not directories are resolved
// lexically: the kernel would fail on them rather than escape.
func checkLink(links map[string]string, rel, target string) error {
	var stack []string // the directory resolved so far, as components below the root
	if d := path.Dir(rel); d != "." {
		stack = strings.Split(d, "/")
	}
	if path.IsAbs(target) {
		return fmt.Errorf("absolute target")
	}
	pending := strings.Split(target, "/")
	for hops := 0; len(pending) > 0; {
		var c string
		c, pending = pending[0], pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return fmt.Errorf("target leaves the artifact")
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, c)
		next, ok := links[strings.Join(stack, "/")]
		if !ok {
			continue
		}
		if hops++; hops > maxLinkHops {
			return fmt.Errorf("too many levels of symlinks")
		}
		stack = stack[:len(stack)-1]
		if next == "" {
			return fmt.Errorf("resolves through a symlink with an empty target")
		}
		if path.IsAbs(next) {
			return fmt.Errorf("resolves through an absolute symlink")
		}
		pending = append(strings.Split(next, "/"), pending...)
	}
	return nil
}

// typeName names a file type for an error message.
func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeIrregular != 0:
		return "irregular file"
	}
	return "special file"
}

func digestOf(sum []byte) string { return "sha256:" + hex.EncodeToString(sum) }

// invalidf makes an error of kind teal.ErrInvalid: bad input the pusher must fix.
func invalidf(hint, format string, args ...any) error {
	return teal.Errorf(teal.ErrInvalid, hint, format, args...)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
