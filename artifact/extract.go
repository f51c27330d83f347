package artifact

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// maxNameLen is the longest entry name accepted, Linux's PATH_MAX.
const maxNameLen = 4096

// limits bound what one push may write.
type limits struct {
	size    int64 // bytes of content
	entries int   // files, directories and symlinks
}

// extractTar unpacks the tar stream r into root, treating it as hostile: names must be
// relative without "..", only regular files, directories and symlinks that stay inside are
// accepted, no entry is written through a symlink, and the limits hold. Errors name the entry.
// Files are written 0444, or 0555 when the tar gives them an exec bit; directories are left
// writable for the caller to seal.
func extractTar(ctx context.Context, r io.Reader, root *os.Root, lim limits) error {
	tr := tar.NewReader(ctxReader{ctx: ctx, r: r})
	kinds := make(map[string]byte) // every name created so far
	links := make(map[string]string)
	var size int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return invalidf("upload a tar of the directory", "read artifact tar: %v", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue // PAX global records carry nothing teal keeps
		}
		name, err := entryName(h.Name)
		if err != nil {
			return err
		}
		if name == "." {
			if h.Typeflag == tar.TypeDir {
				continue // the root itself, as in `tar -C dir .`
			}
			return invalidf("", "artifact tar: entry %q: not a directory but names the root", h.Name)
		}
		if old, dup := kinds[name]; dup {
			if old == tar.TypeDir && h.Typeflag == tar.TypeDir {
				continue
			}
			return invalidf("", "artifact tar: entry %q: duplicate name", h.Name)
		}
		if err := makeParents(root, kinds, name, h.Name, lim.entries); err != nil {
			return err
		}
		if len(kinds) >= lim.entries {
			return tooMany(h.Name, lim.entries)
		}
		native := filepath.FromSlash(name)
		switch h.Typeflag {
		case tar.TypeReg:
			if size += h.Size; size > lim.size {
				return invalidf("", "artifact tar: entry %q: the artifact is over the size limit of %d bytes", h.Name, lim.size)
			}
			if err := writeFile(root, native, tr, h.Size, h.Mode&0o111 != 0); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, io.ErrUnexpectedEOF) {
					return invalidf("upload the whole tar", "artifact tar: entry %q: the tar ends inside it", h.Name)
				}
				return fmt.Errorf("artifact tar: entry %q: %w", h.Name, err)
			}
		case tar.TypeDir:
			if err := root.Mkdir(native, 0o755); err != nil {
				return fmt.Errorf("artifact tar: entry %q: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			if h.Linkname == "" || path.IsAbs(h.Linkname) || strings.IndexByte(h.Linkname, 0) >= 0 {
				return invalidf("symlinks in an artifact must stay inside it",
					"artifact tar: entry %q: symlink target %q is not a relative path", h.Name, h.Linkname)
			}
			if err := root.Symlink(h.Linkname, native); err != nil {
				return fmt.Errorf("artifact tar: entry %q: %w", h.Name, err)
			}
			links[name] = h.Linkname
		default:
			return invalidf("only regular files, directories and symlinks can be in an artifact",
				"artifact tar: entry %q: %s not allowed", h.Name, tarTypeName(h.Typeflag))
		}
		kinds[name] = h.Typeflag
	}
	// Targets are checked once the whole tree is known: a link may resolve through links
	// that come later in the stream.
	for _, name := range slices.Sorted(maps.Keys(links)) {
		if err := checkLink(links, name, links[name]); err != nil {
			return invalidf("symlinks in an artifact must stay inside it",
				"artifact tar: entry %q: symlink to %q: %v", name, links[name], err)
		}
	}
	return nil
}

// entryName checks the name of a tar entry and returns it cleaned, "." for the root.
func entryName(raw string) (string, error) {
	switch {
	case raw == "":
		return "", invalidf("", "artifact tar: an entry has an empty name")
	case len(raw) > maxNameLen:
		return "", invalidf("", "artifact tar: entry %.64q...: name longer than %d bytes", raw, maxNameLen)
	case strings.HasPrefix(raw, "/"):
		return "", invalidf("", "artifact tar: entry %q: absolute path", raw)
	case strings.IndexByte(raw, 0) >= 0:
		return "", invalidf("", "artifact tar: entry %q: NUL in name", raw)
	case slices.Contains(strings.Split(raw, "/"), ".."):
		return "", invalidf("", "artifact tar: entry %q: \"..\" in path", raw)
	}
	return path.Clean(raw), nil
}

// makeParents creates the missing directories above name, as tar(1) does, and refuses to go
// through anything that is not a directory this extraction made: that is what keeps a hostile
// tar from writing through a symlink it planted earlier.
func makeParents(root *os.Root, kinds map[string]byte, name, raw string, maxEntries int) error {
	dir := path.Dir(name)
	if dir == "." || kinds[dir] == tar.TypeDir {
		return nil // a directory is only ever recorded once all above it are
	}
	for i := 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		p := dir[:i]
		kind, ok := kinds[p]
		if ok {
			if kind != tar.TypeDir {
				return invalidf("", "artifact tar: entry %q: %q is not a directory", raw, p)
			}
			continue
		}
		if len(kinds) >= maxEntries {
			return tooMany(raw, maxEntries)
		}
		if err := root.Mkdir(filepath.FromSlash(p), 0o755); err != nil {
			return fmt.Errorf("artifact tar: entry %q: %w", raw, err)
		}
		kinds[p] = tar.TypeDir
	}
	return nil
}

func tooMany(raw string, maxEntries int) error {
	return invalidf("", "artifact tar: entry %q: more than %d entries", raw, maxEntries)
}

// copyTree copies the directory src into root, refusing what the deterministic tar refuses.
func copyTree(ctx context.Context, src string, root *os.Root, lim limits) error {
	entries, err := scan(src)
	if err != nil {
		return err
	}
	if len(entries) > lim.entries {
		return invalidf("", "artifact %s: more than %d entries", src, lim.entries)
	}
	var size int64
	for _, e := range entries {
		size += e.size
	}
	if size > lim.size {
		return invalidf("", "artifact %s: %d bytes is over the size limit of %d bytes", src, size, lim.size)
	}
	base, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	// Entries are sorted by name, so a directory always comes before what it holds.
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		native := filepath.FromSlash(e.rel)
		switch e.kind {
		case tar.TypeDir:
			err = root.Mkdir(native, 0o755)
		case tar.TypeSymlink:
			err = root.Symlink(e.target, native)
		default:
			err = copyFile(ctx, root, native, filepath.Join(base, native), e.size, e.exec)
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", filepath.Join(src, native), err)
		}
	}
	return nil
}

func copyFile(ctx context.Context, root *os.Root, name, src string, size int64, exec bool) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return writeFile(root, name, ctxReader{ctx: ctx, r: f}, size, exec)
}

// writeFile creates name in root with exactly size bytes of r, synced, read-only.
func writeFile(root *os.Root, name string, r io.Reader, size int64, exec bool) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: shorter than its %d bytes", name, size)
		}
		return err
	}
	if err := f.Chmod(readOnly(exec)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readOnly is the mode of an unpacked file: nobody may change what instances run.
func readOnly(exec bool) os.FileMode {
	if exec {
		return 0o555
	}
	return 0o444
}

// tarTypeName names a tar entry type for an error message.
func tarTypeName(t byte) string {
	switch t {
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "named pipe"
	case tar.TypeCont:
		return "contiguous file"
	case tar.TypeGNUSparse:
		return "sparse file"
	}
	return fmt.Sprintf("entry type %q", t)
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
