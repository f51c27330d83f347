package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"teal.dev/teal"
)

func newRollbackCmd(g *globals) *cobra.Command {
	var (
		wait, force bool
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Send traffic back to the previous colour",
		Long: `Sends all traffic back to the previous colour, which must still be running (standby).
It is refused while any of that colour's instances is unhealthy, unless --force.`,
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
			rel, err := c.Rollback(ctx, force)
			if err != nil {
				return err
			}
			if wait && rel != nil {
				if rel, err = w.wait(ctx, rel, goalRollback, timeout); err != nil {
					return err
				}
			}
			if g.json {
				return g.printJSON(rel)
			}
			// The release may be nil (traffic moved back without one): say where traffic is.
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			printRolledBack(g, rel, st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "roll back even if some of the previous colour's instances are unhealthy")
	addWaitFlags(cmd, &wait, &timeout, "traffic is on the previous colour")
	return cmd
}

func printRolledBack(g *globals, rel *teal.Release, st *teal.Status) {
	where := "traffic moved back"
	if st.Live != nil {
		where = fmt.Sprintf("traffic is on %s (%s) again", st.Live.Color, orDash(st.Live.Version))
	}
	if rel != nil {
		fmt.Fprintf(g.stdout, "release #%d of %s rolled back: %s\n", rel.ID, rel.Version, where)
		return
	}
	fmt.Fprintf(g.stdout, "rolled back: %s\n", where)
}
