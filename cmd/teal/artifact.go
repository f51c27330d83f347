package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"teal.dev/teal"
)

func newArtifactCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "artifact",
		Short: "Push and list artifacts: the immutable build of each version",
	}
	cmd.AddCommand(newArtifactPushCmd(g), newArtifactListCmd(g))
	return cmd
}

func newArtifactPushCmd(g *globals) *cobra.Command {
	var version, image string
	cmd := &cobra.Command{
		Use:   "push {PATH | --image REF@sha256:…} --version V",
		Short: "Store the file or directory at PATH, or an image reference, as version V's artifact",
		Long: `Stores the executable file or the directory at PATH as the artifact of version V and
prints its digest. Pushing the same content again is fine; a version's artifact never
changes, so different content under an existing version is refused.

With --image (provider: kubernetes) the artifact is a container image reference pinned by
digest, REPO@sha256:<digest>, and its digest is the image's. A tag alone is refused: it can
move, and teal does not resolve it.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (image != "") {
				return &usageError{err: errors.New("give either PATH or --image REF@sha256:…"), hint: "teal artifact push PATH --version V, or teal artifact push --image REPO@sha256:<digest> --version V"}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var art *teal.Artifact
			if image != "" {
				art, err = c.PushImage(cmd.Context(), version, image)
			} else {
				art, err = c.PushArtifact(cmd.Context(), version, args[0])
			}
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(art)
			}
			fmt.Fprintf(g.stdout, "%s  %s  %s\n", art.Version, art.Digest, fmtSize(art.Size))
			return nil
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "the version the artifact is (required)")
	cmd.Flags().StringVar(&image, "image", "", "push the container image `REF@sha256:DIGEST` instead of a path")
	_ = cmd.MarkFlagRequired("version") // the flag exists: cannot fail
	return cmd
}

func newArtifactListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List stored artifacts: versions, digests, sizes, when pushed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			arts, err := c.Artifacts(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				if arts == nil {
					arts = []*teal.Artifact{}
				}
				return g.printJSON(arts)
			}
			if len(arts) == 0 {
				fmt.Fprintln(g.stdout, "no artifacts yet")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tDIGEST\tSIZE\tKIND\tPUSHED")
			for _, a := range arts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Version, a.Digest, fmtSize(a.Size), a.Kind, a.Pushed.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
}

// fmtSize formats a byte count for people.
func fmtSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
