package artifact

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"teal.dev/teal"
)

// KindImage is the kind of an image artifact: a container image reference pinned by digest,
// for providers that run images (provider: kubernetes). Its digest is the image's, and its
// unpacked copy is one small file, ImageFile, holding the reference.
const KindImage = "image"

// ImageFile is the name of the file an image artifact's reference is stored in.
const ImageFile = "image"

// ImageRef is a container image reference pinned by digest: Repo@Digest.
type ImageRef struct {
	Repo   string // registry.example/shop (a tag, if given, is dropped: the digest decides)
	Digest string // sha256:<64 hex>
}

// String is the pinned reference, Repo@Digest.
func (r ImageRef) String() string { return r.Repo + "@" + r.Digest }

var (
	imageDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// imageRepoRE is the reference grammar's name, loosely: lower-case path components, with
	// an optional registry host (and port) first.
	imageRepoRE = regexp.MustCompile(`^([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$`)
	imageTagRE  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// ParseImageRef parses an image reference pinned by digest (registry.example/shop@sha256:…,
// optionally with a tag before the digest, which is dropped). A reference with a tag alone is
// refused: a tag can move, and resolving it needs the registry, which teal does not reach; the
// error says how to get the digest.
func ParseImageRef(s string) (ImageRef, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return ImageRef{}, fmt.Errorf("image reference is empty: want REPO@sha256:<64 hex>")
	}
	name, digest, pinned := strings.Cut(s, "@")
	// A tag is after the last ':' that follows the last '/' (a registry port is before it).
	repo, tag := name, ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		repo, tag = name[:i], name[i+1:]
		if !imageTagRE.MatchString(tag) {
			return ImageRef{}, fmt.Errorf("image %q: tag %q is not a valid tag", s, tag)
		}
	}
	if !imageRepoRE.MatchString(repo) {
		return ImageRef{}, fmt.Errorf("image %q: repository %q is not a valid image name (lower-case path, optional registry host)", s, repo)
	}
	if !pinned {
		return ImageRef{}, fmt.Errorf("image %q is not pinned by digest: a tag can move under a release, "+
			"and teal cannot reach the registry to resolve it; push %s@sha256:<digest> "+
			"(docker buildx imagetools inspect %s, or crane digest %s, prints it)", s, repo, s, s)
	}
	if !imageDigestRE.MatchString(digest) {
		return ImageRef{}, fmt.Errorf("image %q: digest %q: want sha256: and 64 lower-case hex digits", s, digest)
	}
	return ImageRef{Repo: repo, Digest: digest}, nil
}

// PushImage stores the image reference ref, which must be pinned by digest, as the artifact
// of version. The artifact's digest is the image digest. The bool is as for Push.
func (s *Store) PushImage(ctx context.Context, version, ref string) (*teal.Artifact, bool, error) {
	if err := s.ready(version); err != nil {
		return nil, false, err
	}
	img, err := ParseImageRef(ref)
	if err != nil {
		return nil, false, invalidf("push REPO@sha256:<digest>", "push artifact %s: %v", version, err)
	}
	wd, obj, err := s.newPushDir()
	if err != nil {
		return nil, false, err
	}
	defer s.removeWorkDir(wd)
	data := []byte(img.String() + "\n")
	p := filepath.Join(obj, ImageFile)
	if err := writeSynced(p, data); err != nil {
		return nil, false, fmt.Errorf("push artifact: %w", err)
	}
	if err := os.Chmod(p, readOnly(false)); err != nil {
		return nil, false, fmt.Errorf("push artifact: %w", err)
	}
	rec := record{Version: version, Digest: img.Digest, Size: int64(len(data)), Kind: KindImage, Name: ImageFile}
	return s.commit(ctx, wd, rec, 0)
}
