package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with teal.yaml",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Validate the config and print every error (needs no server)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := g.loadConfig(); err != nil {
				return &usageError{err: err}
			}
			fmt.Fprintf(g.stdout, "%s: ok\n", g.configPath)
			return nil
		},
	})
	return cmd
}
