package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"teal.dev/teal"
	"teal.dev/teal/api"
)

// Exit codes of spec/cli.md. Errors become codes in exitCode, and nowhere else.
const (
	exitOK          = 0
	exitFailed      = 1 // the operation failed: release failed or rolled back, refused (422)
	exitUsage       = 2 // usage or config error
	exitConflict    = 3 // a release in progress, nothing to promote or roll back (409)
	exitUnreachable = 4 // cannot reach the server, or unauthorised
	exitTimeout     = 5 // --wait timed out; the release goes on
)

// runError marks an error returned by a command's RunE. Errors without it come from cobra
// itself (unknown command or flag, wrong arguments, missing required flag): usage errors.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// usageError is a usage or config error found by a command (exit 2).
type usageError struct {
	err  error
	hint string
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// exitError carries an exit code decided by a command (--wait outcomes).
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode maps err to the process's exit code.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var re *runError
	if !errors.As(err, &re) {
		return exitUsage
	}
	var (
		ee *exitError
		ue *usageError
		ae *api.Error
		ce teal.ConfigErrors
	)
	switch {
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue), errors.As(err, &ce):
		return exitUsage
	case errors.Is(err, api.ErrUnreachable):
		return exitUnreachable
	case errors.As(err, &ae):
		switch ae.Status {
		case http.StatusUnauthorized, http.StatusForbidden:
			return exitUnreachable
		case http.StatusBadRequest, http.StatusNotFound:
			// 404: the version, release or instance named does not exist: fix the command.
			return exitUsage
		case http.StatusConflict:
			return exitConflict
		}
		return exitFailed
	case errors.Is(err, teal.ErrInvalid):
		return exitUsage
	case errors.Is(err, teal.ErrConflict):
		return exitConflict
	}
	return exitFailed
}

// hintFor returns what to do next about err, if there is something to say.
func hintFor(err error) string {
	var (
		ee *exitError
		ue *usageError
		ae *api.Error
	)
	switch {
	case errors.As(err, &ee) && ee.hint != "":
		return ee.hint
	case errors.As(err, &ue) && ue.hint != "":
		return ue.hint
	case errors.As(err, &ae) && ae.Hint != "":
		return ae.Hint
	case errors.Is(err, api.ErrUnreachable):
		return "is the server running (teal server)? point --server or $TEAL_SERVER at its admin address"
	case errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden):
		return "pass the admin token with --token or $TEAL_TOKEN, or check the config's admin_token_file"
	}
	return teal.HintOf(err)
}

// printError writes err to w as `teal: <message>`, one line per problem, then `hint: …`.
func printError(w io.Writer, err error, usageHint string) {
	var ce teal.ConfigErrors
	if errors.As(err, &ce) {
		for _, e := range ce {
			fmt.Fprintf(w, "teal: %s\n", e)
		}
	} else {
		// Other multi-line messages (cobra's "Did you mean this?") continue, indented.
		for i, l := range strings.Split(strings.TrimRight(err.Error(), "\n"), "\n") {
			switch {
			case i == 0:
				fmt.Fprintf(w, "teal: %s\n", l)
			case strings.TrimSpace(l) != "":
				fmt.Fprintf(w, "  %s\n", l)
			}
		}
	}
	hint := hintFor(err)
	var re *runError
	if hint == "" && !errors.As(err, &re) {
		hint = usageHint
	}
	if hint != "" {
		fmt.Fprintf(w, "hint: %s\n", hint)
	}
}
