package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"teal.dev/teal"
)

func newHistoryCmd(g *globals) *cobra.Command {
	var n int
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List past releases: id, version, outcome, who, durations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 1 {
				return &usageError{err: fmt.Errorf("-n %d: want 1 or more", n)}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			rels, err := c.Releases(cmd.Context(), n)
			if err != nil {
				return err
			}
			if g.json {
				if rels == nil {
					rels = []*teal.Release{}
				}
				return g.printJSON(rels)
			}
			if len(rels) == 0 {
				fmt.Fprintln(g.stdout, "no releases yet")
				return nil
			}
			now := time.Now()
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tVERSION\tCOLOR\tOUTCOME\tBY\tSTARTED\tDURATION")
			for _, r := range rels {
				end := now
				if r.Finished != nil {
					end = *r.Finished
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Version, r.Color, releaseState(r),
					orDash(r.Actor), r.Created.Local().Format(time.DateTime), fmtDuration(end.Sub(r.Created)))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVarP(&n, "number", "n", 20, "how many releases, newest first")
	return cmd
}
