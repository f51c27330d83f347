package artifact

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// syncDir makes the entries of dir durable: a rename or link is only safe after its directory
// is synced.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return f.Close()
}

// seal syncs every directory of the tree under dir, deepest first, and makes each one below
// dir read-only. dir itself stays writable: renaming a directory into another one needs write
// permission on it (for its ".." entry), so the caller makes it read-only after the rename.
func seal(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("seal %s: %w", dir, err)
	}
	// WalkDir lists a directory before what it holds; reversed, children come first, so a
	// directory is still writable while its subdirectories are sealed.
	for _, p := range slices.Backward(dirs) {
		if err := syncDir(p); err != nil {
			return err
		}
		if p == dir {
			continue
		}
		if err := os.Chmod(p, 0o555); err != nil {
			return fmt.Errorf("seal: %w", err)
		}
	}
	return nil
}

// removeAll removes p and everything under it, read-only directories included.
func removeAll(p string) error {
	// Walk errors are ignored: RemoveAll reports whatever is left that matters.
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(q, 0o755)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// lock takes an exclusive advisory lock on f without waiting. The lock on a work entry under
// tmp/ tells Open in other processes (or other Stores of this one) that it is in use rather
// than a crash's leftover; the kernel drops it when the process dies.
func lock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return true, nil
}

// workDir is a locked directory under tmp/ where one push builds its content.
type workDir struct {
	path string
	lock *os.File
}

// obj is where a push stages the artifact's content, inside the work directory.
func (wd *workDir) obj() string { return filepath.Join(wd.path, "obj") }

// newWorkDir makes and locks a work directory under tmp.
func newWorkDir(tmp string) (*workDir, error) {
	p, err := os.MkdirTemp(tmp, "push-")
	if err != nil {
		return nil, fmt.Errorf("make work directory: %w", err)
	}
	f, err := os.Open(p)
	if err != nil {
		_ = os.RemoveAll(p)
		return nil, fmt.Errorf("make work directory: %w", err)
	}
	if ok, err := lock(f); !ok || err != nil {
		f.Close()
		if err == nil {
			// Only a concurrent Open's sweep locks work directories it did not make.
			err = fmt.Errorf("make work directory: %s was swept while being made", p)
		}
		_ = os.RemoveAll(p)
		return nil, err
	}
	return &workDir{path: p, lock: f}, nil
}

// remove deletes the work directory, then releases its lock.
func (w *workDir) remove() error {
	err := removeAll(w.path)
	if cerr := w.lock.Close(); err == nil {
		err = cerr
	}
	return err
}
