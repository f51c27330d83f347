package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"teal.dev/teal"
)

func newDeployCmd(g *globals) *cobra.Command {
	var (
		artifactPath string
		image        string
		wait         bool
		timeout      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "deploy VERSION",
		Short: "Start a release of VERSION to the idle colour",
		Long: `Starts a release of VERSION: its artifact is launched on the idle colour, health-checked
and verified, then waits at the gate for teal promote (the very first release goes live
as soon as it is healthy). With --artifact, PATH is pushed as VERSION first; with --image
(provider: kubernetes), the image reference pinned by digest.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, version := cmd.Context(), args[0]
			c, err := g.client()
			if err != nil {
				return err
			}
			if artifactPath != "" && image != "" {
				return &usageError{err: errors.New("give --artifact or --image, not both")}
			}
			if artifactPath != "" || image != "" {
				var art *teal.Artifact
				if image != "" {
					art, err = c.PushImage(ctx, version, image)
				} else {
					art, err = c.PushArtifact(ctx, version, artifactPath)
				}
				if err != nil {
					return err
				}
				if !g.json {
					fmt.Fprintf(g.stdout, "pushed %s  %s\n", art.Version, art.Digest)
				}
			}
			var w *waiter
			if wait {
				w = newWaiter(ctx, g, c)
				defer w.close()
			}
			rel, err := c.Deploy(ctx, version)
			if err != nil {
				return err
			}
			if !g.json {
				fmt.Fprintf(g.stdout, "release #%d: %s → %s\n", rel.ID, rel.Version, rel.Color)
			}
			if wait {
				if rel, err = w.wait(ctx, rel, goalDeploy, timeout); err != nil {
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
	cmd.Flags().StringVar(&artifactPath, "artifact", "", "push the file or directory at `PATH` as VERSION first")
	cmd.Flags().StringVar(&image, "image", "", "push the container image `REF@sha256:DIGEST` as VERSION first")
	addWaitFlags(cmd, &wait, &timeout, "the release awaits promotion or is released")
	return cmd
}

// printReached says where a waited-on release stands, and what comes next.
func printReached(g *globals, rel *teal.Release) {
	switch {
	case rel.Outcome != nil:
		fmt.Fprintf(g.stdout, "release #%d: %s is %s on %s\n", rel.ID, rel.Version, *rel.Outcome, rel.Color)
	case rel.Phase == teal.PhaseAwaitingRelease:
		fmt.Fprintf(g.stdout, "release #%d: %s awaits release on %s; teal promote opens the gate\n", rel.ID, rel.Version, rel.Color)
	}
}
