package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"teal.dev/teal"
)

func TestRun_ConfigCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		return p
	}
	good := write("good.yaml", "app: shop\n")
	bad := write("bad.yaml", "app: Shop!\nrun:\n  instances: -1\nhealth:\n  interval: soon\nrelease:\n  aproval: auto\n")

	t.Run("valid", func(t *testing.T) {
		code, out, errOut := runCLI(t, "-c", good, "config", "check")
		if code != exitOK || out != good+": ok\n" || errOut != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errOut, good+": ok")
		}
	})

	t.Run("every error", func(t *testing.T) {
		_, err := teal.LoadConfig(bad)
		var want teal.ConfigErrors
		if !errors.As(err, &want) || len(want) < 3 {
			t.Fatalf("LoadConfig(bad) = %v, want several ConfigErrors", err)
		}
		code, out, errOut := runCLI(t, "-c", bad, "config", "check")
		if code != exitUsage {
			t.Fatalf("exit = %d, want %d (stderr %s)", code, exitUsage, errOut)
		}
		if out != "" {
			t.Fatalf("stdout = %q, want nothing", out)
		}
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("printed %d lines, want %d (one per error):\n%s", len(lines), len(want), errOut)
		}
		for i, e := range want {
			if lines[i] != "teal: "+e.Error() {
				t.Fatalf("line %d = %q, want %q", i, lines[i], "teal: "+e.Error())
			}
		}
	})

	t.Run("missing file", func(t *testing.T) {
		code, _, errOut := runCLI(t, "-c", filepath.Join(dir, "nope.yaml"), "config", "check")
		if code != exitUsage || !strings.HasPrefix(errOut, "teal: ") {
			t.Fatalf("exit %d, stderr %q; want %d", code, errOut, exitUsage)
		}
	})
}
