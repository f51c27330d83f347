package smoke

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"teal.dev/teal"
)

// Verifier runs a config's verify section as a release's smoke tests: the HTTP checks in
// order, then the command. It implements teal.Verifier.
type Verifier struct {
	Runner Runner
	Config teal.VerifyConfig
	// Dir is the command's working directory: the config file's directory.
	Dir string
}

var _ teal.Verifier = (*Verifier)(nil)

// NewVerifier returns a Verifier for cfg; log may be nil.
func NewVerifier(cfg teal.VerifyConfig, dir string, log *slog.Logger) *Verifier {
	return &Verifier{Runner: Runner{Logger: log}, Config: cfg, Dir: dir}
}

// Verify runs the checks against req.BaseURL, writing one line per check and the command's
// output to req.Output.
func (v *Verifier) Verify(ctx context.Context, req teal.VerifyRequest) error {
	out := req.Output
	if len(v.Config.Smoke) > 0 {
		results, err := v.Runner.Checks(ctx, req.BaseURL, v.Config.Smoke, v.Config.Timeout)
		for _, r := range results {
			state := "ok"
			if r.Err != nil {
				state = "FAILED: " + r.Err.Error()
			}
			if out != nil {
				fmt.Fprintf(out, "smoke %q %s → %s in %s: %s\n", r.Check, r.Request, statusText(r.Status), r.Duration.Round(time.Millisecond), state)
			}
		}
		if err != nil {
			return err
		}
	}
	if v.Config.Command == nil {
		return nil
	}
	rel := req.Release
	vars := map[string]string{"preview_url": req.BaseURL, "color": string(rel.Color), "version": rel.Version}
	if out != nil {
		fmt.Fprintf(out, "verify command %q:\n", v.Config.Command)
	}
	return v.Runner.Command(ctx, CommandRequest{
		Argv: v.Config.Command,
		Vars: vars,
		Dir:  v.Dir,
		Env: []string{
			"TEAL_PREVIEW_URL=" + req.BaseURL,
			"TEAL_COLOR=" + string(rel.Color),
			"TEAL_VERSION=" + rel.Version,
			"TEAL_RELEASE=" + strconv.FormatInt(rel.ID, 10),
		},
		Timeout: v.Config.Timeout,
		Output:  out,
	})
}

func statusText(s int) string {
	if s == 0 {
		return "no answer"
	}
	return strconv.Itoa(s)
}
