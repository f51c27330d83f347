package artifact

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"teal.dev/teal"
)

func TestStore_PushImage(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	digest := sha("the image manifest")
	ref := "registry.example/shop:v2@" + digest

	art, created, err := s.PushImage(ctx, "v2", ref)
	if err != nil {
		t.Fatalf("PushImage: %v", err)
	}
	if !created || art.Kind != KindImage || art.Digest != digest || art.Version != "v2" {
		t.Fatalf("PushImage = %+v created %v, want a new image artifact with the image digest", art, created)
	}
	b, err := os.ReadFile(art.Path)
	if err != nil {
		t.Fatalf("read %s: %v", art.Path, err)
	}
	if got, want := string(b), "registry.example/shop@"+digest+"\n"; got != want {
		t.Fatalf("artifact file = %q, want %q (tag dropped, digest pinned)", got, want)
	}

	got, err := s.Get(ctx, "v2")
	if err != nil || got.Kind != KindImage || got.Path != art.Path || got.Digest != digest {
		t.Fatalf("Get(v2) = %+v, %v, want the image artifact", got, err)
	}

	// The same image again is fine; another image under v2 is refused.
	if _, created, err := s.PushImage(ctx, "v2", "registry.example/shop@"+digest); err != nil || created {
		t.Fatalf("PushImage(same) = created %v, %v, want not created, nil", created, err)
	}
	_, _, err = s.PushImage(ctx, "v2", "registry.example/shop@"+sha("other"))
	if !errors.Is(err, teal.ErrConflict) {
		t.Fatalf("PushImage(other digest, v2) = %v, want ErrConflict", err)
	}

	// Another version of the same image shares the unpacked copy.
	art3, _, err := s.PushImage(ctx, "v3", "registry.example/shop@"+digest)
	if err != nil || art3.Path != art.Path {
		t.Fatalf("PushImage(v3) = %+v, %v, want the same copy as v2", art3, err)
	}
}

func TestStore_PushImageRefused(t *testing.T) {
	s := newStore(t)
	tests := []struct{ name, ref, want string }{
		{"tag only", "registry.example/shop:v2", "not pinned by digest"},
		{"short digest", "shop@sha256:abc", "64 lower-case hex"},
		{"empty", "", "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.PushImage(context.Background(), "v1", tc.ref)
			if !errors.Is(err, teal.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("PushImage(%q) = %v, want ErrInvalid containing %q", tc.ref, err, tc.want)
			}
		})
	}
	if _, err := s.Get(context.Background(), "v1"); !errors.Is(err, teal.ErrNotFound) {
		t.Fatalf("Get(v1) after refused pushes = %v, want ErrNotFound", err)
	}
}
