package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newPromoteCmd(g *globals) *cobra.Command {
	var (
		wait    bool
		full    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "promote",
		Short: "Open the gate of the release in progress: traffic switches to its colour",
		Long: `Opens the gate of the release in progress (the dashboard's Release button); a release
promoted before it reaches the gate switches as soon as it does. With no release in
progress, the latest release, if it was rolled back and its colour is still warm, is
released again. During weighted steps it moves to the next step now (--full: all traffic), and
during the post-switch analysis it keeps the new colour.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.client()
			if err != nil {
				return err
			}
			var w *waiter
			if wait {
				w = newWaiter(ctx, g, c)
				defer w.close()
			}
			promote := c.Promote
			if full {
				promote = c.PromoteFull
			}
			rel, err := promote(ctx)
			if err != nil {
				return err
			}
			if !g.json {
				fmt.Fprintf(g.stdout, "release #%d: %s promoted\n", rel.ID, rel.Version)
			}
			if wait {
				if rel, err = w.wait(ctx, rel, goalPromote, timeout); err != nil {
					return err
				}
				if !g.json {
					printReached(g, rel)
				}
			}
			if g.json {
				return g.printJSON(rel)
			}
			return nil
		},
	}
	addWaitFlags(cmd, &wait, &timeout, "the release is released")
	cmd.Flags().BoolVar(&full, "full", false, "during weighted steps, skip the remaining ones: all traffic at once")
	return cmd
}
