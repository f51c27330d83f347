package api

import (
	"context"
	"errors"
	"strings"
	"testing"

	"teal.dev/teal"
)

func TestClient_PushImage(t *testing.T) {
	e := newTestEnv(t, &fakeController{})
	ctx := context.Background()
	digest := "sha256:" + strings.Repeat("ab", 32)

	art, err := e.client.PushImage(ctx, "v1", "registry.example/shop@"+digest)
	if err != nil {
		t.Fatalf("PushImage: %v", err)
	}
	if art.Version != "v1" || art.Kind != "image" || art.Digest != digest {
		t.Fatalf("artifact = %s %s %s, want v1 image %s", art.Version, art.Kind, art.Digest, digest)
	}

	_, err = e.client.PushImage(ctx, "v2", "registry.example/shop:v2")
	if !errors.Is(err, teal.ErrInvalid) || !strings.Contains(err.Error(), "not pinned by digest") {
		t.Fatalf("PushImage(tag only) = %v, want ErrInvalid explaining the digest is missing", err)
	}
	var ae *Error
	if !errors.As(err, &ae) || !strings.Contains(ae.Hint, "sha256") {
		hint := ""
		if ae != nil {
			hint = ae.Hint
		}
		t.Fatalf("hint = %q, want one naming REPO@sha256:<digest>", hint)
	}
}
