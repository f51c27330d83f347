package procenv

import (
	"slices"
	"strings"
	"testing"
)

func TestSetAll(t *testing.T) {
	env := []string{"PATH=/bin", "B=old"}
	env = SetAll(env, map[string]string{"B": "{x}", "A": "a"}, func(s string) string { return strings.ReplaceAll(s, "{x}", "new") })
	env = Set(env, "PATH", "/usr/bin")
	want := []string{"PATH=/usr/bin", "B=new", "A=a"}
	if !slices.Equal(env, want) {
		t.Fatalf("env = %q, want %q", env, want)
	}
}
