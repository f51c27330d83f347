package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newPromoteCmd(g *globals) *cobra.Command {
	var (
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "promote",
		Short: "Open the gate of the release in progress: traffic switches to its colour",
		Long: `Opens the gate of the release in progress (the dashboard's Release button); a release
promoted before it reaches the gate switches as soon as it does. With no release in
progress, the latest release, if it was rolled back and its colour is still warm, is
released again.`,
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
			rel, err := c.Promote(ctx)
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
	return cmd
}
