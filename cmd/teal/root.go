package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// globals are the persistent flags and the process's surroundings every command shares.
type globals struct {
	configPath string
	server     string
	token      string
	json       bool
	logFormat  string

	stdout, stderr io.Writer
	// tty says stdout is a terminal: live progress lines instead of plain ones.
	tty bool
	// getenv reads the environment ($TEAL_SERVER, $TEAL_TOKEN).
	getenv func(string) string
}

// logger returns a logger writing to w in the --log-format.
func (g *globals) logger(w io.Writer) *slog.Logger {
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// printJSON writes v indented to stdout, for --json.
func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// run runs the teal command with args and returns the process's exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr, tty: isTerminal(stdout), getenv: os.Getenv}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	usageHint := "see teal --help"
	if cmd != nil {
		usageHint = fmt.Sprintf("see %s --help", cmd.CommandPath())
	}
	printError(stderr, err, usageHint)
	return exitCode(err)
}

// newRootCmd builds the command tree.
func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "teal",
		Short: "Blue-green releases: two colours, one gate, instant rollback",
		Long: `teal releases one app with blue-green deployments.

teal server runs the controller, router and API; every other command but
demo, version and config check is a client of its API, found from --server,
$TEAL_SERVER or the admin address in teal.yaml.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if g.logFormat != "text" && g.logFormat != "json" {
				return fmt.Errorf("--log-format %q: want text or json", g.logFormat)
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&g.configPath, "config", "c", "teal.yaml", "the app's config file")
	pf.StringVar(&g.server, "server", "", "the server's admin URL (default $TEAL_SERVER, else the config's admin address)")
	pf.StringVar(&g.token, "token", "", "the admin token (default $TEAL_TOKEN, else the config's admin_token_file)")
	pf.BoolVar(&g.json, "json", false, "print JSON instead of text")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")

	root.AddCommand(
		newServerCmd(g),
		newDemoCmd(g),
		newSampleAppCmd(g),
		newStatusCmd(g),
		newDeployCmd(g),
		newPromoteCmd(g),
		newRollbackCmd(g),
		newAbortCmd(g),
		newPauseCmd(g),
		newResumeCmd(g),
		newMaintenanceCmd(g),
		newHistoryCmd(g),
		newLogsCmd(g),
		newArtifactCmd(g),
		newConfigCmd(g),
		newDBCmd(g),
		newVersionCmd(g),
	)
	markRunErrors(root)
	return root
}

// markRunErrors wraps every command's RunE so that exitCode can tell the command's own
// errors from cobra's usage errors, which cobra does not type.
func markRunErrors(c *cobra.Command) {
	if f := c.RunE; f != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if err := f(cmd, args); err != nil {
				return &runError{err: err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markRunErrors(sub)
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
