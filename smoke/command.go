package smoke

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

const (
	// tailLines is how many of the last output lines a command's error carries.
	tailLines = 20
	// tailBytes bounds the output kept for those lines.
	tailBytes = 8 << 10
	// copyGrace is how long the output is still read after the command's process group was
	// killed: only a descendant that left the group (setsid) can hold the pipe open longer.
	copyGrace = 2 * time.Second
)

// CommandRequest is one run of verify.command.
type CommandRequest struct {
	Argv    []string          // with placeholders {preview_url} {color} {version}
	Vars    map[string]string // placeholder values: "preview_url", "color", "version"
	Dir     string            // working directory ("" = current)
	Env     []string          // added to teal's environment (TEAL_PREVIEW_URL etc.; the caller passes them)
	Timeout time.Duration     // 0 = bounded only by ctx
	Output  io.Writer         // receives stdout and stderr as produced (the release log); nil discards
}

// Command runs the external check; exit 0 = pass. A non-zero exit, a failure to start, or the
// timeout is an error naming the command, the exit status (or "timed out after 30s") and the
// last lines (≤ 20) of its output; the end of ctx is an error wrapping ctx.Err().
//
// The command runs in its own process group, which is killed on timeout and also once the
// command exits: a shell script's children (`sleep 30 &`) do not outlive the check.
func (r *Runner) Command(ctx context.Context, req CommandRequest) error {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return errors.New("verify command: empty (want a program and its arguments)")
	}
	argv := substitute(req.Argv, req.Vars)
	name := strings.Join(argv, " ")
	runCtx := ctx
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}

	// One pipe for stdout and stderr keeps their order. The child gets its write end directly
	// (an *os.File), so Wait does not wait for our reading, which a lingering child could block.
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("verify command %q: %w", name, err)
	}
	defer pr.Close()
	cmd := exec.CommandContext(runCtx, argv[0], argv[1:]...)
	cmd.Dir = req.Dir
	cmd.Env = append(os.Environ(), req.Env...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	start := time.Now()
	err = cmd.Start()
	pw.Close() // now only the command holds the write end: EOF when it and its children are gone
	if err != nil {
		return fmt.Errorf("verify command %q: start: %w", name, err)
	}
	out := &tee{out: req.Output}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, pr) // tee never fails; a read error ends the output, not the check
	}()

	waitErr := cmd.Wait()
	// The leader is reaped, but its group's id stays taken while any member lives, so this
	// reaches only the command's own leftovers.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-copied:
	case <-time.After(copyGrace):
		pr.Close() // unblocks the copy
		<-copied
	}
	elapsed := time.Since(start)

	switch {
	case waitErr == nil:
		r.logger().Info("verify command passed", "command", name, "duration", elapsed)
		return nil
	case ctx.Err() != nil:
		err = ctx.Err()
	case runCtx.Err() != nil:
		err = fmt.Errorf("timed out after %s", req.Timeout)
	default:
		err = waitErr // "exit status 3", "signal: killed"
	}
	return fmt.Errorf("verify command %q: %w%s", name, err, out.lastLines())
}

// substitute replaces {name} in argv with vars[name]; other text stays as written.
func substitute(argv []string, vars map[string]string) []string {
	pairs := make([]string, 0, 2*len(vars))
	for k, v := range vars {
		pairs = append(pairs, "{"+k+"}", v)
	}
	rep := strings.NewReplacer(pairs...)
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = rep.Replace(a)
	}
	return out
}

// tee passes output on to out and keeps its last tailBytes for the error. Write never fails:
// a broken log must not stall the command on a full pipe.
type tee struct {
	out    io.Writer
	outErr error
	tail   []byte
}

func (t *tee) Write(p []byte) (int, error) {
	if t.out != nil && t.outErr == nil {
		_, t.outErr = t.out.Write(p)
	}
	t.tail = append(t.tail, p...)
	if over := len(t.tail) - tailBytes; over > 0 {
		t.tail = append(t.tail[:0], t.tail[over:]...)
	}
	return len(p), nil
}

// lastLines returns "; last output:" and up to tailLines lines, indented, or "; no output".
func (t *tee) lastLines() string {
	text := bytes.TrimRight(t.tail, "\n")
	if len(bytes.TrimSpace(text)) == 0 {
		return "; no output"
	}
	lines := strings.Split(string(text), "\n")
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return "; last output:\n  " + strings.Join(lines, "\n  ")
}
