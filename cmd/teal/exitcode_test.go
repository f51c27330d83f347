package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"teal.dev/teal"
	"teal.dev/teal/api"
)

func TestExitCode(t *testing.T) {
	ran := func(err error) error { return &runError{err: err} }
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"cobra usage error", errors.New(`unknown command "x" for "teal"`), exitUsage},
		{"plain failure", ran(errors.New("boom")), exitFailed},
		{"bad request", ran(&api.Error{Status: 400}), exitUsage},
		{"unauthorised", ran(&api.Error{Status: 401}), exitUnreachable},
		{"forbidden", ran(&api.Error{Status: 403}), exitUnreachable},
		{"not found", ran(&api.Error{Status: 404}), exitUsage},
		{"conflict", ran(&api.Error{Status: 409}), exitConflict},
		{"refused", ran(&api.Error{Status: 422}), exitFailed},
		{"server error", ran(&api.Error{Status: 500}), exitFailed},
		{"unreachable", ran(fmt.Errorf("%w at http://x: refused", api.ErrUnreachable)), exitUnreachable},
		{"wait timed out", ran(&exitError{code: exitTimeout, err: errors.New("timed out")}), exitTimeout},
		{"release failed", ran(&exitError{code: exitFailed, err: errors.New("failed")}), exitFailed},
		{"config errors", ran(teal.ConfigErrors{{File: "teal.yaml", Key: "app", Msg: "required"}}), exitUsage},
		{"usage error", ran(&usageError{err: errors.New("-n 0")}), exitUsage},
		{"domain conflict", ran(teal.Errorf(teal.ErrConflict, "", "in progress")), exitConflict},
		{"domain invalid", ran(teal.Errorf(teal.ErrInvalid, "", "PORT is not set")), exitUsage},
		{"wrapped api error", ran(fmt.Errorf("deploy: %w", &api.Error{Status: 409})), exitConflict},
		{"interrupted", ran(context.Canceled), exitFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Fatalf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestPrintError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"api error with hint", &runError{&api.Error{Status: 409, Message: "release #3 is in progress", Hint: "wait for it"}},
			"teal: release #3 is in progress\nhint: wait for it\n"},
		{"domain hint", &runError{teal.Errorf(teal.ErrConflict, "abort it", "busy")}, "teal: busy\nhint: abort it\n"},
		{"no hint", &runError{errors.New("boom")}, "teal: boom\n"},
		{"usage", errors.New("accepts 1 arg(s), received 0"), "teal: accepts 1 arg(s), received 0\nhint: see teal deploy --help\n"},
		{"every config error", &runError{&usageError{err: teal.ConfigErrors{
			{File: "teal.yaml", Key: "app", Msg: "required"},
			{File: "teal.yaml", Key: "run.instances", Value: "-1", Msg: "want 1 or more"},
		}}}, "teal: teal.yaml: app: required\nteal: teal.yaml: run.instances: \"-1\": want 1 or more\n"},
		{"multi-line", errors.New("unknown command \"x\"\n\nDid you mean this?\n\tlogs\n"),
			"teal: unknown command \"x\"\n  Did you mean this?\n  \tlogs\nhint: see teal deploy --help\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			printError(&b, tt.err, "see teal deploy --help")
			if got := b.String(); got != tt.want {
				t.Fatalf("printed\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestRun_UsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown command", []string{"bogus"}},
		{"unknown flag", []string{"status", "--bogus"}},
		{"missing argument", []string{"deploy"}},
		{"extra argument", []string{"status", "now"}},
		{"missing required flag", []string{"artifact", "push", "x"}},
		{"bad duration", []string{"deploy", "v2", "--timeout", "soon"}},
		{"bad log format", []string{"--log-format", "xml", "version"}},
		{"bad colour", []string{"--server", "http://127.0.0.1:1", "--token", "x", "logs", "--color", "red"}},
		{"bad history count", []string{"--server", "http://127.0.0.1:1", "--token", "x", "history", "-n", "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tt.args...)
			if code != exitUsage {
				t.Fatalf("exit = %d, want %d (stderr %s)", code, exitUsage, errOut)
			}
			if !strings.HasPrefix(errOut, "teal: ") {
				t.Fatalf("stderr = %q, want it to start with teal: ", errOut)
			}
		})
	}
}

func TestRun_Version(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != exitOK || !strings.HasPrefix(out, "teal ") || !strings.Contains(out, "go1.") {
		t.Fatalf("exit %d, stdout %q; want 0 and the version", code, out)
	}
	code, out, _ = runCLI(t, "version", "--json")
	if code != exitOK || !strings.Contains(out, `"go": "go1.`) {
		t.Fatalf("exit %d, stdout %q; want 0 and JSON", code, out)
	}
}
