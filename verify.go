package teal

import (
	"context"
	"io"
)

// Verifier runs a release's smoke checks (verify.smoke, verify.command) against the new
// colour before the gate.
type Verifier interface {
	// Verify returns nil when every check passed; otherwise an error that names the check,
	// what was expected and what came back.
	Verify(ctx context.Context, req VerifyRequest) error
}

// VerifyRequest is one run of a release's smoke checks.
type VerifyRequest struct {
	Release *Release
	// BaseURL reaches the new colour: the preview endpoint, like http://127.0.0.1:8081.
	BaseURL string
	// Output receives the checks' progress and the command's output: the release's log.
	Output io.Writer
}
