// Package procenv builds the environment of a process teal starts (an instance, a launch
// hook): the server's own, then configured and per-release variables, each set once.
package procenv

import (
	"slices"
	"strings"
)

// Set sets k=v in env, replacing an earlier value of k.
func Set(env []string, k, v string) []string {
	for i, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

// SetAll sets every variable of m in env, in name order so the result is stable; expand, when
// not nil, rewrites each value first (placeholders).
func SetAll(env []string, m map[string]string, expand func(string) string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		if expand != nil {
			v = expand(v)
		}
		env = Set(env, k, v)
	}
	return env
}
