package main

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"teal.dev/teal"
	"teal.dev/teal/api"
)

func newLogsCmd(g *globals) *cobra.Command {
	var (
		color          string
		instance, tail int
		follow         bool
	)
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Show an instance's output",
		Long: `Shows the output of one instance: by default the first instance of the live colour
(or, before anything is live, of the release's colour).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			req := api.LogsRequest{Instance: instance, Follow: follow, Tail: tail}
			if color != "" {
				col, err := teal.ParseColor(color)
				if err != nil {
					return &usageError{err: fmt.Errorf("--color: %w", err)}
				}
				req.Color = col
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if req.Color == "" || instance < 0 {
				st, err := c.Status(ctx)
				if err != nil {
					return err
				}
				if err := pickInstance(st, &req); err != nil {
					return err
				}
			}
			err = c.Logs(ctx, req, g.stdout)
			if follow && ctx.Err() != nil {
				return nil // interrupted: the usual way to end -f
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&color, "color", "", "the colour: blue or green (default: the live one)")
	f.IntVarP(&instance, "instance", "i", -1, "the instance index (default: the colour's first)")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing output as it is written, until interrupted")
	f.IntVar(&tail, "tail", -1, "only the last `N` lines (default: all)")
	return cmd
}

// pickInstance fills in the defaults of req from st: the live colour (else the release's),
// and that colour's first instance.
func pickInstance(st *teal.Status, req *api.LogsRequest) error {
	if req.Color == "" {
		switch {
		case st.Live != nil:
			req.Color = st.Live.Color
		case st.Release != nil:
			req.Color = st.Release.Color
		default:
			return &exitError{code: exitConflict, err: fmt.Errorf("nothing is deployed yet: no instance has output"), hint: "deploy a version with teal deploy VERSION"}
		}
	}
	if req.Instance >= 0 {
		return nil
	}
	var idx []int
	for _, env := range st.Environments {
		if env.Color == req.Color {
			for _, in := range env.Instances {
				idx = append(idx, in.Index)
			}
		}
	}
	if len(idx) == 0 {
		return &exitError{code: exitConflict, err: fmt.Errorf("%s runs no instances", req.Color), hint: "name one with --color and --instance"}
	}
	req.Instance = slices.Min(idx)
	return nil
}
