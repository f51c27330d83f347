package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
)

// launchScript starts run.instances sample apps of a version on free ports (PORT=0), in their
// own sessions, and prints their addresses as JSON; terminateScript stops them. They stand for
// infrastructure code (Terraform, a cloud CLI) that teal drives through provider: exec.
const launchScript = `#!/bin/sh
set -e
color=$1 version=$2 n=$3
dir="$STATE/$color"
mkdir -p "$dir"
i=1
while [ "$i" -le "$n" ]; do
  PORT=0 setsid "$TEAL_BIN" sample-app --version "$version" >"$dir/$i.out" 2>&1 &
  echo $! >"$dir/$i.pid"
  i=$((i + 1))
done
out="["
i=1
while [ "$i" -le "$n" ]; do
  tries=0
  until grep -q "listening on" "$dir/$i.out"; do
    tries=$((tries + 1)); [ "$tries" -gt 200 ] && { echo "instance $i did not start" >&2; exit 1; }
    sleep 0.05
  done
  addr=$(sed -n 's/.*listening on //p' "$dir/$i.out")
  [ "$i" -gt 1 ] && out="$out,"
  out="$out{\"addr\":\"$addr\",\"id\":\"$color-$i\"}"
  i=$((i + 1))
done
echo "$out]"
`

const terminateScript = `#!/bin/sh
dir="$STATE/$1"
for f in "$dir"/*.pid; do
  [ -e "$f" ] || continue
  kill "$(cat "$f")" 2>/dev/null || true
  rm -f "$f"
done
`

// TestExec_ReleaseThroughLaunchHooks: provider: exec creates each colour with a launch hook,
// teal health-checks and routes to the addresses it printed, and terminate removes the old
// colour; a hook that prints garbage fails the release with a clear error, live untouched.
func TestExec_ReleaseThroughLaunchHooks(t *testing.T) {
	state := t.TempDir()
	hooks := t.TempDir()
	for name, body := range map[string]string{"launch.sh": launchScript, "terminate.sh": terminateScript, "garbage.sh": "#!/bin/sh\necho 'instances are ready!'\n"} {
		if err := os.WriteFile(filepath.Join(hooks, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h := newHarness(t, options{
		top: "provider: exec\n",
		runExtra: fmt.Sprintf(`  launch: ["%s/launch.sh", "{color}", "{version}", "{instances}"]
  terminate: ["%s/terminate.sh", "{color}", "{version}"]
  env: { STATE: "%s", TEAL_BIN: "%s" }
`, hooks, hooks, state, tealBin),
		keepOld: time.Second,
	})
	// The artifact is what the hooks deploy from (an AMI id, say); here it names nothing.
	art := filepath.Join(h.dir, "ami.txt")
	if err := os.WriteFile(art, []byte("ami-0123456789\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.push("v1", art)
	h.push("v2", art)
	h.release("v1")
	if v := versionAt(t, h.listen); v != "v1" {
		t.Fatalf("live answers %s, want v1", v)
	}
	l := startLoad(h.listen)
	h.release("v2")
	waitMore(t, l, 50)
	hits := l.Stop()
	for _, x := range hits {
		if x.Err != nil {
			t.Fatalf("a request failed during the release through hooks: %v", x.Err)
		}
	}
	if v := versionAt(t, h.listen); v != "v2" {
		t.Fatalf("live answers %s, want v2", v)
	}
	// After keep_old, terminate removed blue's instances.
	waitFor(t, 30*time.Second, "blue terminated by the hook", func() bool {
		pids, _ := filepath.Glob(filepath.Join(state, "blue", "*.pid"))
		st := h.status()
		for _, e := range st.Environments {
			if e.Color == teal.Blue {
				return len(pids) == 0 && e.State == teal.EnvTerminated
			}
		}
		return false
	})

	// A launch hook that prints no JSON: a clear error, and green keeps serving.
	cfg, err := os.ReadFile(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.stop()
	if err := os.WriteFile(h.cfg, []byte(strings.Replace(string(cfg), "/launch.sh", "/garbage.sh", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.push("v3", art)
	if _, err := h.client.Deploy(context.Background(), "v3"); err != nil {
		t.Fatal(err)
	}
	rel := h.waitRelease("v3 ended", ended)
	if *rel.Outcome != teal.OutcomeFailed || !strings.Contains(rel.Error, "instances are ready!") {
		t.Fatalf("release with a garbage hook ended %s: %q; want failed, quoting what the hook printed", *rel.Outcome, rel.Error)
	}
	t.Logf("garbage hook: %s", rel.Error)
	if v := versionAt(t, h.listen); v != "v2" {
		t.Fatalf("live answers %s after the failed release, want v2", v)
	}
}
