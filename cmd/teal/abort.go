package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newAbortCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "abort",
		Short: "Stop the release in progress before its switch and tear down its colour",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rel, err := c.Abort(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(rel)
			}
			fmt.Fprintf(g.stdout, "release #%d of %s aborted; the live colour was not touched\n", rel.ID, rel.Version)
			return nil
		},
	}
}
