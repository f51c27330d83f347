package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newPauseCmd(g *globals) *cobra.Command {
	var (
		requests bool
		max      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "pause",
		Short: "Hold a weighted release at its current weight (--requests: hold new requests in the router)",
		Long: `Without flags, holds the weighted release in progress at its current weight: it does not
move to the next step until teal resume (the analysis goes on, and a failing one still rolls
back).

With --requests, the router holds new production requests instead, for a short cut-over done by
hand, until teal resume --requests or --max (capped by release.max_pause); beyond 10,000 waiting
requests the extra ones are answered 503 with Retry-After.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if requests {
				st, err := c.PauseRequests(cmd.Context(), max)
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(st)
				}
				fmt.Fprintln(g.stdout, "new requests are held; teal resume --requests lets them go")
				return nil
			}
			if cmd.Flags().Changed("max") {
				return &usageError{err: fmt.Errorf("--max applies to --requests only"), hint: "teal pause --requests --max 10s"}
			}
			rel, err := c.Pause(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(rel)
			}
			fmt.Fprintf(g.stdout, "release #%d of %s paused at its current weight; teal resume goes on\n", rel.ID, rel.Version)
			return nil
		},
	}
	cmd.Flags().BoolVar(&requests, "requests", false, "hold new requests in the router instead")
	cmd.Flags().DurationVar(&max, "max", 0, "with --requests: let them go after this long at most (default release.max_pause)")
	return cmd
}

func newResumeCmd(g *globals) *cobra.Command {
	var requests bool
	cmd := &cobra.Command{
		Use:   "resume",
		Short: "Let a paused weighted release go on (--requests: let held requests go)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if requests {
				st, err := c.ResumeRequests(cmd.Context())
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(st)
				}
				fmt.Fprintln(g.stdout, "held requests released")
				return nil
			}
			rel, err := c.Resume(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(rel)
			}
			fmt.Fprintf(g.stdout, "release #%d of %s resumed\n", rel.ID, rel.Version)
			return nil
		},
	}
	cmd.Flags().BoolVar(&requests, "requests", false, "let the requests held by teal pause --requests go")
	return cmd
}

func newMaintenanceCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:       "maintenance on|off",
		Short:     "Answer every production request 503 with Retry-After and a maintenance page, or stop",
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []string{"on", "off"},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			on := args[0] == "on"
			st, err := c.Maintenance(cmd.Context(), on)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(st)
			}
			if on {
				fmt.Fprintln(g.stdout, "maintenance on: every request is answered 503; teal maintenance off ends it")
			} else {
				fmt.Fprintln(g.stdout, "maintenance off: traffic flows again")
			}
			return nil
		},
	}
}
