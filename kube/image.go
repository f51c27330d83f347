package kube

import (
	"fmt"
	"os"

	"teal.dev/teal/artifact"
)

// ImageRef is a container image reference pinned by digest (artifact.ImageRef).
type ImageRef = artifact.ImageRef

// ParseImageRef parses an image reference pinned by digest, refusing a tag alone with an
// explanation (artifact.ParseImageRef).
func ParseImageRef(s string) (ImageRef, error) { return artifact.ParseImageRef(s) }

// imageFor is the image a launch runs: the reference stored in the artifact file (an image
// artifact holds its pinned reference) when there is one, else kubernetes.image pinned by
// the artifact digest. Either way the digest must be the artifact's.
func (p *Provider) imageFor(artifact, digest string) (ImageRef, error) {
	if artifact != "" {
		if b, err := os.ReadFile(artifact); err == nil && len(b) < 4096 {
			ref, err := ParseImageRef(string(b))
			if err != nil {
				return ImageRef{}, fmt.Errorf("image artifact %s: %w", artifact, err)
			}
			if digest != "" && ref.Digest != digest {
				return ImageRef{}, fmt.Errorf("image artifact %s pins %s, the release digest is %s", artifact, ref.Digest, digest)
			}
			return ref, nil
		}
	}
	if p.opts.Kube.Image == "" {
		return ImageRef{}, fmt.Errorf("no image: the artifact is not an image reference and kubernetes.image is not set")
	}
	return ParseImageRef(p.opts.Kube.Image + "@" + digest)
}
