package local

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// procStat is what teal needs from /proc/<pid>/stat.
type procStat struct {
	State     byte   // R, S, D, Z, X, …
	StartTime string // field 22: clock ticks since boot when the process started
}

// parseStat parses the content of /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself contain spaces and parentheses, so fields are counted from
// the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("no command name")
	}
	// After ')' come fields 3 (state) onwards.
	fields := strings.Fields(string(b[i+1:]))
	const state, start = 3, 22
	if len(fields) < start-state+1 {
		return procStat{}, fmt.Errorf("%d fields after the command name, want at least %d", len(fields), start-state+1)
	}
	st := fields[0]
	if len(st) != 1 {
		return procStat{}, fmt.Errorf("state %q", st)
	}
	t := fields[start-state]
	if _, err := strconv.ParseUint(t, 10, 64); err != nil {
		return procStat{}, fmt.Errorf("start time %q: %w", t, err)
	}
	return procStat{State: st[0], StartTime: t}, nil
}

// readStat reads /proc/<pid>/stat; the error wraps fs.ErrNotExist when there is no such process.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, syscall.ESRCH) {
			err = fmt.Errorf("%w: %w", fs.ErrNotExist, err)
		}
		return procStat{}, err
	}
	s, err := parseStat(b)
	if err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return s, nil
}

// identity returns the identity teal records for pid: its start time, which differs between
// two processes that got the same PID.
func identity(pid int) (string, error) {
	s, err := readStat(pid)
	if err != nil {
		return "", err
	}
	return s.StartTime, nil
}

// alive reports whether pid is a running process (not a zombie) whose identity is id. A
// process that cannot be read counts as gone: teal must never signal a process it cannot
// prove is its own.
func alive(pid int, id string) bool {
	if pid <= 0 || id == "" {
		return false
	}
	s, err := readStat(pid)
	if err != nil {
		return false
	}
	return s.StartTime == id && s.State != 'Z' && s.State != 'X' && s.State != 'x'
}
