package hook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/procenv"
)

// hookKind names a hook as run.<kind> does in teal.yaml.
type hookKind string

const (
	hookLaunch    hookKind = "launch"
	hookTerminate hookKind = "terminate"
)

const (
	// maxStdout bounds what launch may print: addresses of instances, not logs.
	maxStdout = 1 << 20
	// pipeWait is how long, after a hook exits, teal waits for its stdout to close: a
	// process the hook left running that inherited it would otherwise hold it forever.
	pipeWait = 5 * time.Second
	// tailLines and tailBytes bound the end of a hook's output quoted in an error.
	tailLines = 10
	tailBytes = 4 << 10
	// loggedStdout bounds the copy of launch's stdout appended to the log.
	loggedStdout = 8 << 10
)

// runHook runs hook h for req in p.dir, with its stderr (and terminate's stdout) appended to
// the colour's log, and returns what launch printed on stdout. It returns once the hook has
// exited; when the hook times out or ctx ends first, its process group gets SIGTERM, then
// SIGKILL after p.KillGrace.
func (p *Provider) runHook(ctx context.Context, h hookKind, req teal.LaunchRequest) ([]byte, error) {
	name := fmt.Sprintf("%s %s %s", h, req.Color, req.Version)
	tmpl := p.run.Launch
	if h == hookTerminate {
		tmpl = p.run.Terminate
	}
	if len(tmpl) == 0 || tmpl[0] == "" {
		return nil, fmt.Errorf("%s: run.%s is empty: want the command that %s, like [\"./%s.sh\", \"{color}\", \"{version}\"]",
			name, h, purpose(h), h)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s: not started: %w", name, context.Cause(ctx))
	}
	vals := p.values(req)
	argv := make([]string, len(tmpl))
	for i, a := range tmpl {
		argv[i] = expand(a, vals)
	}
	prog := argv[0]
	if strings.ContainsRune(prog, '/') && !filepath.IsAbs(prog) {
		// Relative to the config file's directory, whatever the server's working directory.
		prog = filepath.Join(p.dir, prog)
	}

	if err := os.MkdirAll(p.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: create log directory: %w", name, err)
	}
	logPath := p.logPath(req.Color)
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", name, err)
	}
	defer f.Close()
	start := time.Now()
	fmt.Fprintf(f, "teal: %s %s: %s\n", start.UTC().Format(time.RFC3339), name, strings.Join(quoteArgs(argv), " "))
	offset, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}

	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	grace := p.KillGrace
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	cmd := exec.Command(prog, argv[1:]...)
	cmd.Dir = p.dir
	cmd.Env = p.env(h, req, vals)
	stdout := &cappedBuffer{max: maxStdout}
	if h == hookLaunch {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = f
	}
	cmd.Stderr = f
	// Its own process group: a timeout or cancel reaches everything it started, and a Ctrl-C
	// to the server's terminal does not interrupt a terraform apply halfway.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = pipeWait
	log := p.logger().With("app", p.app, "color", string(req.Color), "version", req.Version, "hook", string(h))
	if err := cmd.Start(); err != nil {
		err = startError(h, argv[0], p.dir, err)
		fmt.Fprintf(f, "teal: %s: %v\n", name, err)
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	log.Info("hook started", "pid", cmd.Process.Pid, "log", logPath)

	done := make(chan struct{})
	killed := make(chan error, 1) // why the hook was told to stop; nothing when it was not
	go func() {
		defer close(killed)
		t := time.NewTimer(timeout)
		defer t.Stop()
		var why error
		select {
		case <-done:
			return
		case <-ctx.Done():
			why = fmt.Errorf("interrupted, its process group was killed: %w", context.Cause(ctx))
		case <-t.C:
			why = fmt.Errorf("timed out after %s, its process group was killed: %w", timeout, context.DeadlineExceeded)
		}
		killed <- why
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		g := time.NewTimer(grace)
		defer g.Stop()
		select {
		case <-done:
		case <-g.C:
		}
		// Also whatever in the group outlived the leader, ignoring SIGTERM. The group cannot
		// be reused while one of them lives; once all are gone this finds nothing.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}()
	waitErr := cmd.Wait()
	close(done)
	why := <-killed
	took := time.Since(start).Round(time.Millisecond)
	tail := readTail(logPath, offset)

	// What happened, as the log's footer and in the error.
	var status string
	var failed error
	var ee *exec.ExitError
	switch {
	case why != nil:
		status = why.Error()
		failed = fmt.Errorf("%s %w", argv[0], why)
	case waitErr == nil:
		status = "exit status 0"
	case errors.Is(waitErr, exec.ErrWaitDelay):
		// It exited 0, but something it started still holds its stdout: what launch printed
		// is complete, the leftover process's output after pipeWait is lost.
		status = "exit status 0; a process it started still held its stdout, which teal closed"
		log.Warn("a process the hook started kept its stdout open: redirect the output of background processes (>/dev/null 2>&1, or to a file)")
	case errors.As(waitErr, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			status = "killed by signal " + ws.Signal().String()
			failed = fmt.Errorf("%s was %s", argv[0], status)
		} else {
			status = "exit status " + strconv.Itoa(ee.ExitCode())
			failed = fmt.Errorf("%s exited with status %d", argv[0], ee.ExitCode())
		}
	default:
		status = waitErr.Error()
		failed = fmt.Errorf("%s: %w", argv[0], waitErr)
	}
	fmt.Fprintf(f, "\nteal: %s: %s after %s\n", name, status, took)
	if h == hookLaunch {
		out := stdout.Bytes()
		if len(out) > loggedStdout {
			out = out[:loggedStdout]
		}
		fmt.Fprintf(f, "teal: %s printed (%d bytes): %s\n", name, stdout.n, out)
	}
	if failed != nil {
		log.Warn("hook failed", "status", status, "duration", took)
		return nil, fmt.Errorf("%s: %w%s", name, failed, tailNote(tail, logPath))
	}
	log.Info("hook done", "duration", took)
	if stdout.n > maxStdout {
		return nil, fmt.Errorf("%s: %s printed %d bytes on stdout, more than %d: stdout must hold only the JSON array of instances; write logs to stderr",
			name, argv[0], stdout.n, maxStdout)
	}
	return stdout.Bytes(), nil
}

// values are the placeholders of run.launch and run.terminate for req.
func (p *Provider) values(req teal.LaunchRequest) map[string]string {
	return map[string]string{
		"app":       p.app,
		"color":     string(req.Color),
		"version":   req.Version,
		"digest":    req.Digest,
		"artifact":  req.Artifact,
		"instances": strconv.Itoa(p.run.Instances),
	}
}

// env is a hook's environment. Later sources win: the server's environment, run.env, the
// request's (DATABASE_URL and friends), then what teal sets.
func (p *Provider) env(h hookKind, req teal.LaunchRequest, vals map[string]string) []string {
	env := os.Environ()
	env = procenv.SetAll(env, p.run.Env, func(v string) string { return expand(v, vals) })
	env = procenv.SetAll(env, req.Env, nil)
	env = procenv.Set(env, "TEAL_APP", p.app)
	env = procenv.Set(env, "TEAL_COLOR", string(req.Color))
	env = procenv.Set(env, "TEAL_VERSION", req.Version)
	env = procenv.Set(env, "TEAL_DIGEST", req.Digest)
	env = procenv.Set(env, "TEAL_ARTIFACT", req.Artifact)
	env = procenv.Set(env, "TEAL_INSTANCES", vals["instances"])
	env = procenv.Set(env, "TEAL_HOOK", string(h))
	return env
}

// expand replaces each {name} in s that vals has. As in config validation, only the innermost
// {…} before each } can be a placeholder, and ${NAME} is left alone for the hook's shell.
func expand(s string, vals map[string]string) string {
	var b strings.Builder
	for {
		end := strings.IndexByte(s, '}')
		if end < 0 {
			b.WriteString(s)
			return b.String()
		}
		start := strings.LastIndexByte(s[:end], '{')
		if start >= 0 && (start == 0 || s[start-1] != '$') {
			if v, ok := vals[s[start+1:end]]; ok {
				b.WriteString(s[:start])
				b.WriteString(v)
				s = s[end+1:]
				continue
			}
		}
		b.WriteString(s[:end+1])
		s = s[end+1:]
	}
}

func purpose(h hookKind) string {
	if h == hookLaunch {
		return "creates a colour's instances and prints their addresses as JSON"
	}
	return "removes a colour's instances"
}

// startError explains why a hook could not start, with a hint at the likely cause.
func startError(h hookKind, argv0, dir string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if pe.Op == "chdir" {
			return fmt.Errorf("start %s: directory %s: %w (the hooks run in the config file's directory)", argv0, pe.Path, pe.Err)
		}
		err = pe.Err
	}
	hint := ""
	switch {
	case errors.Is(err, fs.ErrPermission):
		hint = " — is it executable (chmod +x)?"
	case errors.Is(err, syscall.ENOEXEC):
		hint = " — does the script start with #! (like #!/bin/sh)?"
	case errors.Is(err, exec.ErrNotFound):
		hint = fmt.Sprintf(" — not found in PATH; check run.%s[0]", h)
	case errors.Is(err, fs.ErrNotExist):
		hint = fmt.Sprintf(" — check run.%s[0]; a relative path is relative to %s, the config file's directory", h, dir)
	}
	return fmt.Errorf("start %s: %w%s", argv0, err, hint)
}

// readTail returns the last lines written to the log at path after offset: the hook's own
// output, without teal's header.
func readTail(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	from := max(offset, st.Size()-tailBytes)
	b := make([]byte, st.Size()-from)
	if n, _ := f.ReadAt(b, from); n < len(b) {
		b = b[:n]
	}
	if from > offset {
		// Started mid-line: drop the partial line.
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// tailNote presents the end of a hook's output for an error message.
func tailNote(tail, logPath string) string {
	if tail == "" {
		return fmt.Sprintf(" (it printed nothing else; log: %s)", logPath)
	}
	return fmt.Sprintf("; last lines of its output (all of it in %s):\n%s", logPath, indent(tail))
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// quoteArgs quotes the arguments that need it, for the log's header line.
func quoteArgs(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return out
}

// cappedBuffer keeps the first max bytes written to it and counts the rest: a hook that
// prints too much is neither blocked nor sent SIGPIPE, and is refused afterwards.
type cappedBuffer struct {
	max int
	buf bytes.Buffer
	n   int
}

func (c *cappedBuffer) Write(b []byte) (int, error) {
	c.n += len(b)
	if room := c.max - c.buf.Len(); room > 0 {
		c.buf.Write(b[:min(room, len(b))])
	}
	return len(b), nil
}

// Bytes returns what was kept.
func (c *cappedBuffer) Bytes() []byte { return c.buf.Bytes() }
