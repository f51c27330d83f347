package hook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// TestMain makes this test binary double as an instance the launch hooks start: with
// TEAL_HOOK_TEST_SERVE=FILE it serves HTTP on a free loopback port, whose address it writes
// to FILE (atomically), until it is killed.
func TestMain(m *testing.M) {
	if file := os.Getenv("TEAL_HOOK_TEST_SERVE"); file != "" {
		if err := serve(file); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func serve(file string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := os.WriteFile(file+".tmp", []byte(ln.Addr().String()), 0o644); err != nil {
		return err
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		return err
	}
	// The hook's environment, as the instance saw it: proof of what launch passed on.
	body := fmt.Sprintf("%s %s %s %s db=%s\n", os.Getenv("TEAL_APP"), os.Getenv("TEAL_COLOR"),
		os.Getenv("TEAL_VERSION"), os.Getenv("TEAL_DIGEST"), os.Getenv("DATABASE_URL"))
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
}

// launchScript starts $3 instances of the test binary in the background, records their PIDs
// in $STATE_DIR/<color>/pids, waits for each one's address and prints them as JSON.
const launchScript = `#!/bin/sh
set -eu
color=$1 version=$2 n=$3
state="$STATE_DIR/$color"
mkdir -p "$state"
echo "launching $n instances of $version on $color" >&2
i=0
json=
while [ "$i" -lt "$n" ]; do
  rm -f "$state/$i.addr"
  TEAL_HOOK_TEST_SERVE="$state/$i.addr" "$TEST_BINARY" </dev/null >>"$state/$i.log" 2>&1 &
  pid=$!
  echo "$pid" >>"$state/pids"
  tries=0
  until [ -s "$state/$i.addr" ]; do
    tries=$((tries + 1))
    if [ "$tries" -gt 1000 ]; then echo "instance $i did not start" >&2; exit 1; fi
    sleep 0.01
  done
  json="$json${json:+,}{\"addr\":\"$(cat "$state/$i.addr")\",\"id\":\"pid-$pid\"}"
  i=$((i + 1))
done
echo "[$json]"
`

// terminateScript kills the PIDs launch recorded, and notes "<color> <version>" in
// $STATE_DIR/terminated. Nothing recorded is nothing to do: it is idempotent.
const terminateScript = `#!/bin/sh
set -eu
color=$1 version=$2
state="$STATE_DIR/$color"
echo "terminating $version on $color" >&2
echo "$color $version" >>"$STATE_DIR/terminated"
[ -f "$state/pids" ] || exit 0
while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$state/pids"
rm -f "$state/pids"
`

// fixture is a config directory with the hooks, and a provider running them.
type fixture struct {
	dir, logDir string
	p           *Provider
}

func newFixture(t *testing.T, launch string) *fixture {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "launch.sh"), launch, 0o755)
	writeFile(t, filepath.Join(dir, "terminate.sh"), terminateScript, 0o755)
	logDir := filepath.Join(t.TempDir(), "logs")
	run := teal.RunConfig{
		Instances: 2,
		Env:       map[string]string{"STATE_DIR": dir, "TEST_BINARY": exe},
		Launch:    []string{"./launch.sh", "{color}", "{version}", "{instances}"},
		Terminate: []string{"./terminate.sh", "{color}", "{version}"},
	}
	f := &fixture{dir: dir, logDir: logDir, p: NewProvider("shop", run, dir, logDir)}
	t.Cleanup(func() { f.killAll(t) })
	return f
}

// killAll kills whatever a test left running.
func (f *fixture) killAll(t *testing.T) {
	for _, c := range teal.Colors {
		for _, pid := range f.pids(t, c) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// pids are the processes launch recorded for c and terminate has not killed.
func (f *fixture) pids(t *testing.T, c teal.Color) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, string(c), "pids"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for l := range strings.FieldsSeq(string(b)) {
		pid, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("pids of %s: %v", c, err)
		}
		pids = append(pids, pid)
	}
	return pids
}

func (f *fixture) terminated(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "terminated"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func request(c teal.Color, version string) teal.LaunchRequest {
	return teal.LaunchRequest{Color: c, Version: version, Digest: "sha256:" + version,
		Artifact: "/artifacts/" + version, Env: map[string]string{"DATABASE_URL": "postgres://db/shop_" + string(c)}}
}

func TestProvider_LaunchAndStop(t *testing.T) {
	t.Parallel()
	f := newFixture(t, launchScript)
	ctx := context.Background()

	// Both colours at once: each colour's hooks run on their own.
	var wg sync.WaitGroup
	got := make(map[teal.Color][]teal.Instance)
	errs := make(map[teal.Color]error)
	var mu sync.Mutex
	for _, c := range teal.Colors {
		wg.Go(func() {
			insts, err := f.p.Launch(ctx, request(c, "v1"))
			mu.Lock()
			got[c], errs[c] = insts, err
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, c := range teal.Colors {
		if errs[c] != nil {
			t.Fatalf("Launch(%s): %v", c, errs[c])
		}
		insts := got[c]
		pids := f.pids(t, c)
		if len(insts) != 2 || len(pids) != 2 {
			t.Fatalf("Launch(%s) = %+v with pids %v, want 2 instances", c, insts, pids)
		}
		for i, in := range insts {
			if in.Color != c || in.Index != i || in.Started.IsZero() || in.PID != 0 {
				t.Fatalf("%s instance %d = %+v, want colour, index %d, a start time, no PID", c, i, in, i)
			}
			if want := fmt.Sprintf("pid-%d", pids[i]); in.Identity != want {
				t.Fatalf("%s instance %d identity = %q, want %q", c, i, in.Identity, want)
			}
			want := fmt.Sprintf("shop %s v1 sha256:v1 db=postgres://db/shop_%s\n", c, c)
			if body := get(t, in.Addr); body != want {
				t.Fatalf("GET %s = %q, want %q", in.Addr, body, want)
			}
		}
		if p := f.p.Instances(c); !slices.Equal(p, insts) {
			t.Fatalf("Instances(%s) = %+v, want %+v", c, p, insts)
		}
	}

	blue := got[teal.Blue]
	pids := f.pids(t, teal.Blue)
	if err := f.p.Stop(ctx, teal.Blue); err != nil {
		t.Fatalf("Stop(blue): %v", err)
	}
	waitGone(t, pids, blue)
	if got, want := f.terminated(t), []string{"blue v1"}; !slices.Equal(got, want) {
		t.Fatalf("terminated = %q, want %q", got, want)
	}
	if p := f.p.Instances(teal.Blue); p != nil {
		t.Fatalf("Instances(blue) after Stop = %+v, want none", p)
	}
	// Green is untouched, and a second Stop of blue has nothing to do.
	if body := get(t, got[teal.Green][0].Addr); !strings.HasPrefix(body, "shop green v1") {
		t.Fatalf("GET green after stopping blue = %q", body)
	}
	if err := f.p.Stop(ctx, teal.Blue); err != nil {
		t.Fatalf("second Stop(blue): %v", err)
	}
	if got, want := f.terminated(t), []string{"blue v1"}; !slices.Equal(got, want) {
		t.Fatalf("terminated after a second Stop = %q, want %q", got, want)
	}
	f.p.Detach() // a no-op: green keeps serving
	if body := get(t, got[teal.Green][1].Addr); !strings.HasPrefix(body, "shop green v1") {
		t.Fatalf("GET green after Detach = %q", body)
	}
}

func TestProvider_LaunchTerminatesFirst(t *testing.T) {
	t.Parallel()
	f := newFixture(t, launchScript)
	ctx := context.Background()
	v1, err := f.p.Launch(ctx, request(teal.Green, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	v1pids := f.pids(t, teal.Green)
	v2, err := f.p.Launch(ctx, request(teal.Green, "v2"))
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, v1pids, v1)
	if got, want := f.terminated(t), []string{"green v1"}; !slices.Equal(got, want) {
		t.Fatalf("terminated = %q, want %q", got, want)
	}
	if body := get(t, v2[0].Addr); !strings.HasPrefix(body, "shop green v2 ") {
		t.Fatalf("GET v2 = %q, want shop green v2", body)
	}
}

func TestProvider_AdoptThenStop(t *testing.T) {
	t.Parallel()
	f := newFixture(t, launchScript)
	ctx := context.Background()
	insts, err := f.p.Launch(ctx, request(teal.Blue, "v3"))
	if err != nil {
		t.Fatal(err)
	}
	pids := f.pids(t, teal.Blue)

	// A new server process: it knows the colour only from the recorded instances.
	later := NewProvider("shop", f.p.run, f.dir, f.logDir)
	if err := later.Stop(ctx, teal.Blue); err != nil {
		t.Fatalf("Stop before Adopt: %v", err)
	}
	if got := f.terminated(t); got != nil {
		t.Fatalf("Stop of a colour never launched nor adopted ran terminate: %q", got)
	}
	recorded := []teal.Instance{insts[1], insts[0]}
	adopted, err := later.Adopt(ctx, request(teal.Blue, "v3"), recorded)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(adopted, insts) {
		t.Fatalf("Adopt = %+v, want the recorded instances in index order %+v", adopted, insts)
	}
	if body := get(t, adopted[0].Addr); !strings.HasPrefix(body, "shop blue v3") {
		t.Fatalf("GET adopted = %q", body)
	}
	if err := later.Stop(ctx, teal.Blue); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pids, insts)
	if got, want := f.terminated(t), []string{"blue v3"}; !slices.Equal(got, want) {
		t.Fatalf("terminated = %q, want %q", got, want)
	}
}

func TestProvider_TerminateFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, launchScript)
	ctx := context.Background()
	insts, err := f.p.Launch(ctx, request(teal.Blue, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	pids := f.pids(t, teal.Blue)
	writeFile(t, filepath.Join(f.dir, "terminate.sh"), "#!/bin/sh\necho 'api rate limited' >&2\nexit 2\n", 0o755)
	err = f.p.Stop(ctx, teal.Blue)
	for _, want := range []string{"terminate blue v1", "exited with status 2", "api rate limited"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Stop with a failing terminate = %v, want an error with %q", err, want)
		}
	}
	if p := f.p.Instances(teal.Blue); !slices.Equal(p, insts) {
		t.Fatalf("Instances(blue) after a failed Stop = %+v, want them kept %+v", p, insts)
	}
	// Nor can the colour be launched over while it cannot be terminated.
	_, err = f.p.Launch(ctx, request(teal.Blue, "v2"))
	if err == nil || !strings.Contains(err.Error(), "terminate blue (v1) before launch: terminate blue v1: ./terminate.sh exited with status 2") {
		t.Fatalf("Launch over a colour terminate fails for = %v, want the terminate error", err)
	}
	if got := readFile(t, filepath.Join(f.logDir, "hook-blue.log")); strings.Contains(got, "launch blue v2") {
		t.Fatalf("launch ran although terminate failed:\n%s", got)
	}
	// The retry runs terminate again.
	writeFile(t, filepath.Join(f.dir, "terminate.sh"), terminateScript, 0o755)
	if err := f.p.Stop(ctx, teal.Blue); err != nil {
		t.Fatalf("Stop retried: %v", err)
	}
	waitGone(t, pids, insts)
}

func TestProvider_LaunchErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		mode   os.FileMode
		want   []string
	}{
		{"exit status", "echo 'creating 2 instances' >&2\necho 'quota exceeded for c5.large' >&2\nexit 3\n", 0o755,
			[]string{"launch blue v1: ./launch.sh exited with status 3", "last lines of its output", "quota exceeded for c5.large", "hook-blue.log"}},
		{"killed by a signal", "kill -KILL $$\n", 0o755,
			[]string{"./launch.sh was killed by signal killed"}},
		{"garbage", "echo 'Creating instances...'\necho '[{\"addr\":\"127.0.0.1:8080\"}]'\n", 0o755,
			[]string{"./launch.sh exited 0 but printed no JSON array of instances", `stdout began with "Creating instances...\n[{\"addr\":`, "logs go to stderr"}},
		{"nothing", "echo 'all done' >&2\n", 0o755,
			[]string{"printed nothing on stdout"}},
		{"bad address", `echo '[{"addr":"nope"}]'` + "\n", 0o755,
			[]string{`exited 0 but printed a bad instance 0: addr "nope": not host:port`}},
		{"port out of range", `echo '[{"addr":"10.0.0.5:8080"},{"addr":"10.0.0.6:70000"}]'` + "\n", 0o755,
			[]string{`printed a bad instance 1: addr "10.0.0.6:70000": port "70000": want 1..65535`}},
		{"empty array", "echo '[]'\n", 0o755,
			[]string{"printed an empty array: no instances"}},
		{"duplicate", `echo '[{"addr":"10.0.0.5:80"},{"addr":"10.0.0.5:80"}]'` + "\n", 0o755,
			[]string{`printed instances 0 and 1 with the same addr "10.0.0.5:80"`}},
		{"too much output", "head -c 1100000 /dev/zero | tr '\\0' x\n", 0o755,
			[]string{"printed 1100000 bytes on stdout, more than 1048576"}},
		{"not executable", "echo '[]'\n", 0o644,
			[]string{"start ./launch.sh", "permission denied", "chmod +x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "#!/bin/sh\n"+tt.script)
			if err := os.Chmod(filepath.Join(f.dir, "launch.sh"), tt.mode); err != nil {
				t.Fatal(err)
			}
			insts, err := f.p.Launch(context.Background(), request(teal.Blue, "v1"))
			if err == nil {
				t.Fatalf("Launch = %+v, want an error", insts)
			}
			t.Logf("Launch error: %v", err)
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("Launch error = %v\nwant it to contain %q", err, want)
				}
			}
			// What a failed launch created is unknown: Stop runs terminate for it.
			if err := f.p.Stop(context.Background(), teal.Blue); err != nil {
				t.Fatalf("Stop after a failed launch: %v", err)
			}
			if got, want := f.terminated(t), []string{"blue v1"}; !slices.Equal(got, want) {
				t.Fatalf("terminated after a failed launch = %q, want %q", got, want)
			}
		})
	}
}

func TestProvider_LaunchNotFound(t *testing.T) {
	t.Parallel()
	f := newFixture(t, launchScript)
	f.p.run.Launch = []string{"./nowhere.sh"}
	_, err := f.p.Launch(context.Background(), request(teal.Green, "v1"))
	for _, want := range []string{"start ./nowhere.sh", "check run.launch[0]", f.dir} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Launch = %v, want an error with %q", err, want)
		}
	}
	f.p.run.Launch = []string{"teal-no-such-program-anywhere"}
	_, err = f.p.Launch(context.Background(), request(teal.Green, "v1"))
	if err == nil || !strings.Contains(err.Error(), "not found in PATH") {
		t.Fatalf("Launch = %v, want not found in PATH", err)
	}
}

// sleeper starts a process in the background that records its PID, and waits for it.
const sleeper = `echo "$$" >"$STATE_DIR/hook.pid"
sleep 300 &
echo "$!" >"$STATE_DIR/sleep.pid"
echo 'still creating...' >&2
wait
`

func TestProvider_Timeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
	}{
		{"stops on TERM", "#!/bin/sh\n" + sleeper},
		{"ignores TERM", "#!/bin/sh\ntrap '' TERM\n" + sleeper},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.script)
			f.p.Timeout = 300 * time.Millisecond
			f.p.KillGrace = 200 * time.Millisecond
			start := time.Now()
			_, err := f.p.Launch(context.Background(), request(teal.Blue, "v1"))
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("Launch took %s, want it killed after its timeout", took)
			}
			t.Logf("Launch error: %v", err)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Launch = %v, want context.DeadlineExceeded", err)
			}
			for _, want := range []string{"launch blue v1: ./launch.sh timed out after 300ms, its process group was killed", "still creating..."} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("Launch error = %v\nwant it to contain %q", err, want)
				}
			}
			waitPidsGone(t, f.readPid(t, "hook.pid"), f.readPid(t, "sleep.pid"))
		})
	}
}

func TestProvider_Cancel(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "#!/bin/sh\n"+sleeper)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := f.p.Launch(ctx, request(teal.Green, "v1"))
		errc <- err
	}()
	testutil.WaitFor(t, 10*time.Second, "the launch hook to start its sleep", func() bool {
		b, err := os.ReadFile(filepath.Join(f.dir, "sleep.pid"))
		return err == nil && len(b) > 0
	})
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "launch green v1: ./launch.sh interrupted") {
		t.Fatalf("Launch = %v, want interrupted: context.Canceled", err)
	}
	waitPidsGone(t, f.readPid(t, "hook.pid"), f.readPid(t, "sleep.pid"))

	// A context that has ended starts nothing.
	if err := os.Remove(filepath.Join(f.dir, "hook.pid")); err != nil {
		t.Fatal(err)
	}
	_, err = f.p.Launch(ctx, request(teal.Green, "v2"))
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "not started") {
		t.Fatalf("Launch with an ended context = %v, want not started: context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "hook.pid")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the launch hook ran with an ended context: %v", err)
	}
}

func (f *fixture) readPid(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return pid
}

func TestProvider_PlaceholdersAndEnv(t *testing.T) {
	t.Setenv("TEAL_HOOK_TEST_OUTER", "from the server")
	t.Setenv("DATABASE_URL", "postgres://server-default")
	script := `#!/bin/sh
printf '%s\n' "$@" >"$STATE_DIR/args"
env >"$STATE_DIR/env"
pwd >"$STATE_DIR/pwd"
echo '[{"addr":"127.0.0.1:9","id":"i-0abc"}]'
`
	f := newFixture(t, script)
	f.p.run.Instances = 3
	f.p.run.Env["EXTRA"] = "{app}-{color}-{version}"
	f.p.run.Launch = []string{"./launch.sh", "{app}", "{color}", "{version}", "{digest}", "{artifact}",
		"{instances}", "${color}", "{unknown}", "{{color}}", "x{version}y"}
	insts, err := f.p.Launch(context.Background(), request(teal.Green, "v7"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []teal.Instance{{Color: teal.Green, Addr: "127.0.0.1:9", Identity: "i-0abc", Started: insts[0].Started}}; !slices.Equal(insts, want) {
		t.Fatalf("Launch = %+v, want %+v", insts, want)
	}
	args := strings.Split(strings.TrimSuffix(readFile(t, filepath.Join(f.dir, "args")), "\n"), "\n")
	wantArgs := []string{"shop", "green", "v7", "sha256:v7", "/artifacts/v7", "3", "${color}", "{unknown}", "{green}", "xv7y"}
	if !slices.Equal(args, wantArgs) {
		t.Fatalf("launch args = %q, want %q", args, wantArgs)
	}
	env := strings.Split(readFile(t, filepath.Join(f.dir, "env")), "\n")
	for _, want := range []string{
		"TEAL_APP=shop", "TEAL_COLOR=green", "TEAL_VERSION=v7", "TEAL_DIGEST=sha256:v7",
		"TEAL_ARTIFACT=/artifacts/v7", "TEAL_INSTANCES=3", "TEAL_HOOK=launch",
		"EXTRA=shop-green-v7", "TEAL_HOOK_TEST_OUTER=from the server",
		"DATABASE_URL=postgres://db/shop_green", // the request's wins over the server's
	} {
		if !slices.Contains(env, want) {
			t.Fatalf("launch environment lacks %q:\n%s", want, strings.Join(env, "\n"))
		}
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(f.dir, "pwd"))); got != f.dir {
		t.Fatalf("launch ran in %q, want the config directory %q", got, f.dir)
	}

	// terminate gets the same placeholders and environment, with TEAL_HOOK=terminate.
	f.p.run.Terminate = f.p.run.Launch
	if err := f.p.Stop(context.Background(), teal.Green); err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(readFile(t, filepath.Join(f.dir, "args")), "\n"), "\n"); !slices.Equal(got, wantArgs) {
		t.Fatalf("terminate args = %q, want %q", got, wantArgs)
	}
	if env := strings.Split(readFile(t, filepath.Join(f.dir, "env")), "\n"); !slices.Contains(env, "TEAL_HOOK=terminate") || !slices.Contains(env, "TEAL_VERSION=v7") {
		t.Fatalf("terminate environment lacks TEAL_HOOK=terminate, TEAL_VERSION=v7:\n%s", strings.Join(env, "\n"))
	}
}

func TestProvider_LogFile(t *testing.T) {
	t.Parallel()
	f := newFixture(t, launchScript)
	if _, err := f.p.LogFile(teal.Blue, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LogFile before any hook ran = %v, want fs.ErrNotExist", err)
	}
	if _, err := f.p.Launch(context.Background(), request(teal.Blue, "v1")); err != nil {
		t.Fatal(err)
	}
	if err := f.p.Stop(context.Background(), teal.Blue); err != nil {
		t.Fatal(err)
	}
	path, err := f.p.LogFile(teal.Blue, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(f.logDir, "hook-blue.log"); path != want {
		t.Fatalf("LogFile(blue, 1) = %q, want %q", path, want)
	}
	log := readFile(t, path)
	for _, want := range []string{
		"launch blue v1: ./launch.sh blue v1 2\n", "launching 2 instances of v1 on blue\n",
		"teal: launch blue v1: exit status 0 after ", `teal: launch blue v1 printed (`, `"id":"pid-`,
		"terminate blue v1: ./terminate.sh blue v1\n", "terminating v1 on blue\n", "teal: terminate blue v1: exit status 0 after ",
	} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %q:\n%s", want, log)
		}
	}
	if _, err := f.p.LogFile(teal.Green, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LogFile(green) = %v, want fs.ErrNotExist", err)
	}
	if _, err := f.p.LogFile("red", 0); err == nil || !strings.Contains(err.Error(), "want blue or green") {
		t.Fatalf("LogFile(red) = %v, want a colour error", err)
	}
	if _, err := f.p.LogFile(teal.Blue, -1); err == nil {
		t.Fatal("LogFile(blue, -1) = nil error, want one")
	}
}

func TestProvider_BadColor(t *testing.T) {
	t.Parallel()
	f := newFixture(t, launchScript)
	ctx := context.Background()
	if _, err := f.p.Launch(ctx, request("red", "v1")); err == nil || !strings.Contains(err.Error(), `colour "red"`) {
		t.Fatalf("Launch(red) = %v, want a colour error", err)
	}
	if _, err := f.p.Adopt(ctx, request("red", "v1"), nil); err == nil {
		t.Fatal("Adopt(red) = nil error, want one")
	}
	if err := f.p.Stop(ctx, "red"); err == nil {
		t.Fatal("Stop(red) = nil error, want one")
	}
}

func TestExpand(t *testing.T) {
	vals := map[string]string{"color": "blue", "version": "v1", "artifact": "/a/{color}"}
	tests := []struct{ in, want string }{
		{"{color}", "blue"},
		{"x{color}-{version}y", "xblue-v1y"},
		{"{artifact}", "/a/{color}"}, // values are not expanded again
		{"${color}", "${color}"},
		{"$${color}", "$${color}"},
		{"{{color}}", "{blue}"},
		{"{unknown}", "{unknown}"},
		{"{", "{"},
		{"}", "}"},
		{"{}", "{}"},
		{`{"a":1}`, `{"a":1}`},
		{"", ""},
	}
	for _, tt := range tests {
		if got := expand(tt.in, vals); got != tt.want {
			t.Errorf("expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// get fetches / from addr.
func get(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", addr, err)
	}
	return string(b)
}

// waitGone waits until the processes have exited and nothing answers on the instances'
// addresses.
func waitGone(t *testing.T, pids []int, insts []teal.Instance) {
	t.Helper()
	waitPidsGone(t, pids...)
	for _, in := range insts {
		testutil.WaitFor(t, 10*time.Second, in.Addr+" to refuse connections", func() bool {
			c, err := net.DialTimeout("tcp", in.Addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err != nil
		})
	}
}

// waitPidsGone waits until none of pids is a running process (a zombie waiting for its
// parent counts as gone).
func waitPidsGone(t *testing.T, pids ...int) {
	t.Helper()
	if len(pids) == 0 {
		t.Fatal("no PIDs to wait for")
	}
	for _, pid := range pids {
		testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("pid %d to exit", pid), func() bool {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				return true
			}
			i := strings.LastIndexByte(string(b), ')')
			return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
		})
	}
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
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
