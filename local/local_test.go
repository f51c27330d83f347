package local

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/sampleapp"

	"teal.dev/teal/internal/testutil"
)

// TestMain makes this test binary double as the app under test: started with
// TEAL_TEST_SAMPLEAPP=1 it serves the sample app on $PORT, which spares building anything.
func TestMain(m *testing.M) {
	if os.Getenv("TEAL_TEST_SAMPLEAPP") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := sampleapp.Run(ctx, ":"+os.Getenv("PORT"), os.Getenv("TEAL_VERSION")); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	if state := os.Getenv("TEAL_TEST_SERVER"); state != "" {
		os.Exit(fakeServer(state))
	}
	os.Exit(m.Run())
}

// fakeServer is a teal server in miniature, run in a process of its own: it launches one
// blue instance of the sample app, prints the instances as JSON and waits to be killed.
func fakeServer(state string) int {
	exe, err := os.Executable()
	if err != nil {
		return 1
	}
	p := NewProvider("shop", state, teal.RunConfig{Command: []string{exe},
		Env: map[string]string{"TEAL_TEST_SERVER": "", "TEAL_TEST_SAMPLEAPP": "1"}, Instances: 1})
	insts, err := p.Launch(context.Background(), teal.LaunchRequest{Color: teal.Blue, Version: "v1", Artifact: exe})
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(insts); err != nil {
		return 1
	}
	select {}
}

func TestProvider_LaunchServesHTTP(t *testing.T) {
	p := newProvider(t, t.TempDir(), sampleRun(t, 2))
	insts, err := p.Launch(context.Background(), sampleRequest(t, teal.Blue, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(insts) != 2 {
		t.Fatalf("Launch returned %d instances, want 2", len(insts))
	}
	for i, in := range insts {
		if in.Index != i || in.Color != teal.Blue || in.PID == 0 || in.Identity == "" || in.Started.IsZero() {
			t.Fatalf("instance %d = %+v, want index %d, blue, a PID, identity and start time", i, in, i)
		}
		if !strings.HasPrefix(in.Addr, "127.0.0.1:") {
			t.Fatalf("instance %d addr = %q, want 127.0.0.1:port", i, in.Addr)
		}
		want := "shop v1 (color blue, instance " + strconv.Itoa(i) + ")\n"
		if got := waitGet(t, in.Addr, "/"); got != want {
			t.Fatalf("GET / on instance %d = %q, want %q", i, got, want)
		}
	}
	if insts[0].Addr == insts[1].Addr {
		t.Fatalf("both instances on %s", insts[0].Addr)
	}
	if got := p.Instances(teal.Blue); len(got) != 2 || got[0] != insts[0] || got[1] != insts[1] {
		t.Fatalf("Instances(blue) = %+v, want %+v", got, insts)
	}
	if got := p.Instances(teal.Green); got != nil {
		t.Fatalf("Instances(green) = %+v, want none", got)
	}
}

func TestProvider_LaunchReplacesRunning(t *testing.T) {
	p := newProvider(t, t.TempDir(), sampleRun(t, 1))
	first, err := p.Launch(context.Background(), sampleRequest(t, teal.Blue, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := p.Launch(context.Background(), sampleRequest(t, teal.Blue, "v2"))
	if err != nil {
		t.Fatal(err)
	}
	if alive(first[0].PID, first[0].Identity) {
		t.Fatalf("v1 process %d still running after launching v2", first[0].PID)
	}
	if got, want := waitGet(t, second[0].Addr, "/"), "shop v2 (color blue, instance 0)\n"; got != want {
		t.Fatalf("GET / = %q, want %q", got, want)
	}
}

func TestProvider_EnvAndPlaceholders(t *testing.T) {
	t.Setenv("TEAL_TEST_SERVER_VAR", "server")
	artifact := t.TempDir() // a directory artifact: {artifact_dir} is itself
	if err := os.Mkdir(filepath.Join(artifact, "sub-green"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := `echo "argv {port} {color} {version} {instance} {app}"; echo "art {artifact} {artifact_dir}"; ` +
		`echo "pwd $(pwd)"; env; echo done; exec sleep 100`
	run := teal.RunConfig{
		Command:     []string{"sh", "-c", script},
		Dir:         "{artifact_dir}/sub-{color}",
		Env:         map[string]string{"FROM_RUN": "run-{color}-{instance}", "BOTH": "run", "PORT": "1"},
		Instances:   2,
		StopTimeout: 5 * time.Second,
	}
	p := newProvider(t, t.TempDir(), run)
	req := teal.LaunchRequest{Color: teal.Green, Version: "v3", Artifact: artifact,
		Env: map[string]string{"BOTH": "req", "DATABASE_URL": "postgres://db/shop_green"}}
	insts, err := p.Launch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range insts {
		_, port, _ := net.SplitHostPort(in.Addr)
		idx := strconv.Itoa(in.Index)
		path, err := p.LogFile(teal.Green, in.Index)
		if err != nil {
			t.Fatal(err)
		}
		log := waitLog(t, path, "done\n")
		for _, want := range []string{
			"teal: start v3 green/" + idx + " pid " + strconv.Itoa(in.PID) + " on " + in.Addr,
			"argv " + port + " green v3 " + idx + " shop\n",
			"art " + artifact + " " + artifact + "\n",
			"pwd " + filepath.Join(artifact, "sub-green") + "\n",
			"\nPORT=" + port + "\n",
			"\nTEAL_APP=shop\n",
			"\nTEAL_COLOR=green\n",
			"\nTEAL_VERSION=v3\n",
			"\nTEAL_INSTANCE=" + idx + "\n",
			"\nFROM_RUN=run-green-" + idx + "\n",
			"\nBOTH=req\n",
			"\nDATABASE_URL=postgres://db/shop_green\n",
			"\nTEAL_TEST_SERVER_VAR=server\n",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("log of green/%d lacks %q:\n%s", in.Index, want, log)
			}
		}
	}
}

func TestProvider_RestartAfterKill(t *testing.T) {
	p := newProvider(t, t.TempDir(), sampleRun(t, 1))
	insts, err := p.Launch(context.Background(), sampleRequest(t, teal.Blue, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	old := insts[0]
	waitGet(t, old.Addr, "/healthz")
	for restart := 1; restart <= 2; restart++ {
		before := p.Instances(teal.Blue)[0]
		if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var now teal.Instance
		waitFor(t, 10*time.Second, func() bool {
			now = p.Instances(teal.Blue)[0]
			return now.Restarts == restart && now.PID != 0
		})
		if now.PID == before.PID || now.Addr != old.Addr {
			t.Fatalf("after kill %d: instance = %+v, want a new PID on %s", restart, now, old.Addr)
		}
		if got, want := waitGet(t, old.Addr, "/"), "shop v1 (color blue, instance 0)\n"; got != want {
			t.Fatalf("GET / after restart = %q, want %q", got, want)
		}
	}
	path, err := p.LogFile(teal.Blue, 0)
	if err != nil {
		t.Fatal(err)
	}
	if log := readFile(t, path); !strings.Contains(log, "signal: killed") {
		t.Fatalf("log lacks the exit reason:\n%s", log)
	}
}

func TestProvider_RestartPolicy(t *testing.T) {
	tests := []struct {
		name    string
		restart string
		script  string
	}{
		{"never restarts a failure", "never", "exit 1"},
		{"on-failure leaves a clean exit alone", "on-failure", "exit 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A crash-looping instance of another Provider is the clock: once it has been
			// restarted a few times, a wrong restart would have happened too.
			clock := newProvider(t, t.TempDir(), shRun(t, "exit 1", "on-failure"))
			p := newProvider(t, t.TempDir(), shRun(t, tt.script, tt.restart))
			if _, err := p.Launch(context.Background(), shRequest(t, teal.Blue)); err != nil {
				t.Fatal(err)
			}
			if _, err := clock.Launch(context.Background(), shRequest(t, teal.Blue)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, func() bool { return clock.Instances(teal.Blue)[0].Restarts >= 3 })
			path, err := p.LogFile(teal.Blue, 0)
			if err != nil {
				t.Fatal(err)
			}
			log := waitLog(t, path, "teal: exit")
			got := p.Instances(teal.Blue)[0]
			if got.Restarts != 0 || got.PID != 0 {
				t.Fatalf("instance = %+v, want 0 restarts and no PID", got)
			}
			if n := strings.Count(log, "teal: start"); n != 1 {
				t.Fatalf("log has %d starts, want 1:\n%s", n, log)
			}
		})
	}
}

func TestProvider_Stop(t *testing.T) {
	tests := []struct {
		name        string
		run         teal.RunConfig
		ctxTimeout  time.Duration
		minDuration time.Duration
		maxDuration time.Duration
		ready       string // in the log once the process is set up
		wantInLog   string
	}{
		{
			name:        "graceful on TERM",
			run:         sampleRun(t, 2),
			ctxTimeout:  time.Minute,
			maxDuration: 4 * time.Second, // well under the 5s stop timeout: no KILL needed
			ready:       "listening",
			wantInLog:   "with SIGTERM",
		},
		{
			name:        "KILL after the stop timeout",
			run:         ignoreTermRun(t, 300*time.Millisecond),
			ctxTimeout:  time.Minute,
			minDuration: 300 * time.Millisecond,
			maxDuration: 5 * time.Second,
			ready:       "ready",
			wantInLog:   "still running after 300ms",
		},
		{
			name:        "KILL when the context ends",
			run:         ignoreTermRun(t, time.Minute),
			ctxTimeout:  200 * time.Millisecond,
			minDuration: 200 * time.Millisecond,
			maxDuration: 5 * time.Second,
			ready:       "ready",
			wantInLog:   "teal: kill",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProvider(t, t.TempDir(), tt.run)
			insts, err := p.Launch(context.Background(), sampleRequest(t, teal.Blue, "v1"))
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range insts {
				path, err := p.LogFile(teal.Blue, in.Index)
				if err != nil {
					t.Fatal(err)
				}
				waitLog(t, path, tt.ready)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.ctxTimeout)
			defer cancel()
			start := time.Now()
			if err := p.Stop(ctx, teal.Blue); err != nil {
				t.Fatalf("Stop = %v", err)
			}
			if d := time.Since(start); d < tt.minDuration || d > tt.maxDuration {
				t.Fatalf("Stop took %s, want between %s and %s", d, tt.minDuration, tt.maxDuration)
			}
			for _, in := range insts {
				if alive(in.PID, in.Identity) {
					t.Fatalf("instance %d (pid %d) still running after Stop", in.Index, in.PID)
				}
			}
			if got := p.Instances(teal.Blue); got != nil {
				t.Fatalf("Instances after Stop = %+v, want none", got)
			}
			path, _ := p.LogFile(teal.Blue, 0)
			if log := readFile(t, path); !strings.Contains(log, tt.wantInLog) {
				t.Fatalf("log lacks %q:\n%s", tt.wantInLog, log)
			}
			if err := p.Stop(ctx, teal.Blue); err != nil {
				t.Fatalf("second Stop = %v, want nil", err)
			}
		})
	}
}

func TestProvider_StopBadColor(t *testing.T) {
	p := newProvider(t, t.TempDir(), sampleRun(t, 1))
	if err := p.Stop(context.Background(), "red"); err == nil {
		t.Fatal("Stop(red) = nil, want an error")
	}
}

func TestProvider_LaunchErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-exec")
	writeFile(t, notExec, "#!/bin/sh\nexec sleep 100\n", 0o644)
	good := filepath.Join(dir, "app-0")
	writeFile(t, good, "#!/bin/sh\nexec sleep 100\n", 0o755)
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name      string
		command   []string
		dir       string
		instances int
		artifact  string
		want      string
	}{
		{"not executable", []string{"{artifact}"}, "", 1, notExec,
			"blue/0: start " + notExec + ": permission denied — is the artifact executable?"},
		{"missing file", []string{"{artifact}"}, "", 1, missing,
			"blue/0: start " + missing + ": no such file or directory"},
		{"bad dir", []string{"{artifact}"}, "/nonexistent-teal-dir", 1, good,
			"blue/0: start " + good + ": directory /nonexistent-teal-dir: no such file or directory — check run.dir"},
		{"not in PATH", []string{"teal-no-such-program"}, "", 1, good,
			`blue/0: start teal-no-such-program: exec: "teal-no-such-program": executable file not found`},
		{"second instance fails", []string{"{artifact_dir}/app-{instance}"}, "", 2, good,
			"blue/1: start " + filepath.Join(dir, "app-1") + ": no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := t.TempDir()
			p := newProvider(t, state, teal.RunConfig{Command: tt.command, Dir: tt.dir, Instances: tt.instances,
				StopTimeout: 5 * time.Second})
			_, err := p.Launch(context.Background(), teal.LaunchRequest{Color: teal.Blue, Version: "v1", Artifact: tt.artifact})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Launch = %v, want an error containing %q", err, tt.want)
			}
			if got := p.Instances(teal.Blue); got != nil {
				t.Fatalf("Instances after a failed launch = %+v, want none", got)
			}
			if tt.instances < 2 {
				return
			}
			// Instance 0 did start: it must have been stopped.
			log := readFile(t, filepath.Join(state, "logs", "blue-0.log"))
			m := regexp.MustCompile(`teal: start v1 blue/0 pid (\d+)`).FindStringSubmatch(log)
			if m == nil {
				t.Fatalf("log of blue/0 lacks its start:\n%s", log)
			}
			pid, _ := strconv.Atoi(m[1])
			if _, err := readStat(pid); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("blue/0 (pid %d) still exists after the failed launch: %v", pid, err)
			}
		})
	}
}

func TestProvider_AdoptAfterClose(t *testing.T) {
	state := t.TempDir()
	req := sampleRequest(t, teal.Blue, "v1")
	first := newProvider(t, state, sampleRun(t, 2))
	recorded, err := first.Launch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range recorded {
		waitGet(t, in.Addr, "/healthz")
	}
	start := time.Now()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %s, want it prompt", d)
	}
	if _, err := first.Launch(context.Background(), req); !errors.Is(err, ErrClosed) {
		t.Fatalf("Launch after Close = %v, want ErrClosed", err)
	}

	second := newProvider(t, state, sampleRun(t, 2))
	adopted, err := second.Adopt(context.Background(), req, recorded)
	if err != nil {
		t.Fatal(err)
	}
	if len(adopted) != 2 {
		t.Fatalf("Adopt returned %d instances, want 2", len(adopted))
	}
	for i := range recorded {
		if adopted[i] != recorded[i] {
			t.Fatalf("adopted instance %d = %+v, want it unchanged: %+v", i, adopted[i], recorded[i])
		}
		if got, want := waitGet(t, adopted[i].Addr, "/"), "shop v1 (color blue, instance "+strconv.Itoa(i)+")\n"; got != want {
			t.Fatalf("GET / = %q, want %q", got, want)
		}
	}

	// The adopted process is not the new Provider's child: its death is seen by polling.
	if err := syscall.Kill(adopted[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var now teal.Instance
	waitFor(t, 10*time.Second, func() bool {
		now = second.Instances(teal.Blue)[0]
		return now.Restarts == 1 && now.PID != 0
	})
	if now.PID == adopted[0].PID || now.Addr != adopted[0].Addr {
		t.Fatalf("restarted instance = %+v, want a new PID on %s", now, adopted[0].Addr)
	}
	waitGet(t, now.Addr, "/healthz")

	if err := second.Stop(context.Background(), teal.Blue); err != nil {
		t.Fatal(err)
	}
	for _, in := range []teal.Instance{now, adopted[1]} {
		if alive(in.PID, in.Identity) {
			t.Fatalf("pid %d still running after Stop", in.PID)
		}
	}
}

func TestProvider_InstancesOutliveServer(t *testing.T) {
	// The server runs in a process group of its own, as a foreground job of a terminal
	// does: Ctrl-C signals that whole group.
	state := t.TempDir()
	server := exec.Command(testBinary(t))
	server.Env = append(os.Environ(), "TEAL_TEST_SERVER="+state)
	server.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := server.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = server.Process.Kill()
		_ = server.Wait()
	})
	var recorded []teal.Instance
	if err := json.NewDecoder(out).Decode(&recorded); err != nil {
		t.Fatalf("read the server's instances: %v", err)
	}
	if len(recorded) != 1 {
		t.Fatalf("server launched %+v, want 1 instance", recorded)
	}
	inst := recorded[0]
	// Stop the instance at the end even if the test fails before adopting it.
	t.Cleanup(func() {
		if alive(inst.PID, inst.Identity) {
			_ = syscall.Kill(-inst.PID, syscall.SIGKILL)
		}
	})
	waitGet(t, inst.Addr, "/healthz")

	if err := syscall.Kill(-server.Process.Pid, syscall.SIGINT); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	if err := syscall.Kill(server.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := server.Wait(); err == nil {
		t.Fatal("server exited cleanly, want it killed")
	}
	if got, want := waitGet(t, inst.Addr, "/"), "shop v1 (color blue, instance 0)\n"; got != want {
		t.Fatalf("GET / after the server died = %q, want %q", got, want)
	}

	// A new server adopts the orphan, which is no child of this process, and stops it.
	p := newProvider(t, state, sampleRun(t, 1))
	adopted, err := p.Adopt(context.Background(), sampleRequest(t, teal.Blue, "v1"), recorded)
	if err != nil {
		t.Fatal(err)
	}
	if len(adopted) != 1 || adopted[0] != inst {
		t.Fatalf("Adopt = %+v, want %+v unchanged", adopted, inst)
	}
	if err := p.Stop(context.Background(), teal.Blue); err != nil {
		t.Fatal(err)
	}
	if alive(inst.PID, inst.Identity) {
		t.Fatalf("adopted pid %d still running after Stop", inst.PID)
	}
}

func TestProvider_AdoptStranger(t *testing.T) {
	// A stranger holds the recorded PID (the PID was reused): it must be neither adopted
	// nor signalled.
	stranger := exec.Command("sleep", "100")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	strangerDone := make(chan struct{})
	go func() {
		_ = stranger.Wait()
		close(strangerDone)
	}()
	t.Cleanup(func() {
		_ = stranger.Process.Kill()
		<-strangerDone
	})
	strangerID, err := identity(stranger.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}

	addr := testutil.FreeAddr(t)
	recorded := []teal.Instance{
		{Color: teal.Blue, Index: 0, Addr: addr, PID: stranger.Process.Pid, Identity: strangerID + "0",
			Started: time.Now().Add(-time.Hour), Restarts: 4},
	}
	p := newProvider(t, t.TempDir(), sampleRun(t, 1))
	got, err := p.Adopt(context.Background(), sampleRequest(t, teal.Blue, "v1"), recorded)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].PID == stranger.Process.Pid || got[0].PID == 0 || got[0].Addr != addr || got[0].Restarts != 5 {
		t.Fatalf("Adopt = %+v, want a new process on %s with 5 restarts", got, addr)
	}
	if body, want := waitGet(t, addr, "/"), "shop v1 (color blue, instance 0)\n"; body != want {
		t.Fatalf("GET / = %q, want %q", body, want)
	}
	if err := p.Stop(context.Background(), teal.Blue); err != nil {
		t.Fatal(err)
	}
	select {
	case <-strangerDone:
		t.Fatal("the stranger holding the recorded PID was killed")
	default:
	}
	if !alive(stranger.Process.Pid, strangerID) {
		t.Fatal("the stranger holding the recorded PID is not running")
	}
}

func TestProvider_LogFile(t *testing.T) {
	p := newProvider(t, t.TempDir(), sampleRun(t, 1))
	if _, err := p.LogFile(teal.Blue, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LogFile before launch = %v, want not exist", err)
	}
	if _, err := p.LogFile("red", 0); err == nil {
		t.Fatal("LogFile(red) = nil error, want one")
	}
	if _, err := p.Launch(context.Background(), sampleRequest(t, teal.Blue, "v1")); err != nil {
		t.Fatal(err)
	}
	path, err := p.LogFile(teal.Blue, 0)
	if err != nil {
		t.Fatal(err)
	}
	if log := waitLog(t, path, "listening"); !strings.Contains(log, "sampleapp v1 listening on") {
		t.Fatalf("log = %q, want the app's output", log)
	}
}

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
		err  bool
	}{
		{"TERM", syscall.SIGTERM, false},
		{"SIGTERM", syscall.SIGTERM, false},
		{"int", syscall.SIGINT, false},
		{"QUIT", syscall.SIGQUIT, false},
		{"9", syscall.SIGKILL, false},
		{"BOGUS", 0, true},
		{"", 0, true},
		{"0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSignal(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("ParseSignal(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	tail := " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20 21\n"
	tests := []struct {
		name  string
		in    string
		want  procStat
		error bool
	}{
		{"plain", "12 (sleep)" + tail, procStat{State: 'S', StartTime: "4242"}, false},
		{"odd command name", "12 (a) (b c)" + tail, procStat{State: 'S', StartTime: "4242"}, false},
		{"zombie", "12 (x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99", procStat{State: 'Z', StartTime: "99"}, false},
		{"truncated", "12 (x) S 1 2 3", procStat{}, true},
		{"no name", "12 x S", procStat{}, true},
		{"bad start time", "12 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 -1", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.error || got != tt.want {
				t.Fatalf("parseStat = %+v, %v; want %+v, error %v", got, err, tt.want, tt.error)
			}
		})
	}
	self, err := identity(os.Getpid())
	if err != nil || self == "" {
		t.Fatalf("identity(self) = %q, %v", self, err)
	}
	if !alive(os.Getpid(), self) || alive(os.Getpid(), self+"1") {
		t.Fatal("alive(self) must hold with its identity only")
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("12 (sleep) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20 21\n"))
	f.Add([]byte("1 ((x)) R"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStat(b)
		if err != nil {
			return
		}
		if _, err := strconv.ParseUint(s.StartTime, 10, 64); err != nil {
			t.Fatalf("parseStat(%q) start time %q is not a number", b, s.StartTime)
		}
	})
}

// newProvider returns a Provider for app "shop" with fast restarts and polling; at the end
// of the test it stops what is still running.
func newProvider(t *testing.T, state string, run teal.RunConfig) *Provider {
	t.Helper()
	p := NewProvider("shop", state, run)
	p.RestartBackoff = 10 * time.Millisecond
	p.MaxRestartBackoff = 50 * time.Millisecond
	p.PollInterval = 20 * time.Millisecond
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, c := range teal.Colors {
			if err := p.Stop(ctx, c); err != nil {
				t.Errorf("cleanup: stop %s: %v", c, err)
			}
		}
		_ = p.Close()
	})
	return p
}

func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// sampleRun runs this test binary as the sample app.
func sampleRun(t *testing.T, instances int) teal.RunConfig {
	return teal.RunConfig{
		Command:     []string{testBinary(t)},
		Env:         map[string]string{"TEAL_TEST_SAMPLEAPP": "1"},
		Instances:   instances,
		StopTimeout: 5 * time.Second,
	}
}

func sampleRequest(t *testing.T, c teal.Color, version string) teal.LaunchRequest {
	return teal.LaunchRequest{Color: c, Version: version, Digest: "sha256:00", Artifact: testBinary(t)}
}

// ignoreTermRun runs a process that ignores SIGTERM (and says "ready" once it does).
func ignoreTermRun(t *testing.T, stopTimeout time.Duration) teal.RunConfig {
	return teal.RunConfig{
		Command:     []string{"sh", "-c", `trap "" TERM; echo ready; exec sleep 100`},
		Instances:   1,
		StopTimeout: stopTimeout,
	}
}

func shRun(t *testing.T, script, restart string) teal.RunConfig {
	return teal.RunConfig{Command: []string{"sh", "-c", script}, Instances: 1, Restart: restart,
		StopTimeout: 5 * time.Second}
}

func shRequest(t *testing.T, c teal.Color) teal.LaunchRequest {
	return teal.LaunchRequest{Color: c, Version: "v1", Artifact: t.TempDir()}
}

// waitGet polls GET http://addr+path until it answers 200, and returns the body.
func waitGet(t *testing.T, addr, path string) string {
	t.Helper()
	var body string
	waitFor(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		body = string(b)
		return err == nil && resp.StatusCode == 200
	})
	return body
}

// waitLog polls the file until it contains want, and returns its content.
func waitLog(t *testing.T, path, want string) string {
	t.Helper()
	var s string
	waitFor(t, 10*time.Second, func() bool {
		b, err := os.ReadFile(path)
		s = string(b)
		return err == nil && strings.Contains(s, want)
	})
	return s
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, "the condition", cond)
}
