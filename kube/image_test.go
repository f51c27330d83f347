package kube_test

import (
	"strings"
	"testing"

	"teal.dev/teal/kube"
)

const dig = "sha256:3f1c8a0d5b3e4c1f9a7b2d6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f2a"

func TestParseImageRef(t *testing.T) {
	tests := []struct {
		name, in string
		want     kube.ImageRef
		wantErr  string // substring; "" = no error
	}{
		{name: "pinned", in: "registry.example/shop@" + dig, want: kube.ImageRef{Repo: "registry.example/shop", Digest: dig}},
		{name: "tag and digest", in: "registry.example/shop:v2@" + dig, want: kube.ImageRef{Repo: "registry.example/shop", Digest: dig}},
		{name: "registry port", in: "localhost:5000/team/shop@" + dig, want: kube.ImageRef{Repo: "localhost:5000/team/shop", Digest: dig}},
		{name: "docker hub short", in: "nginx@" + dig, want: kube.ImageRef{Repo: "nginx", Digest: dig}},
		{name: "spaces trimmed", in: " shop@" + dig + "\n", want: kube.ImageRef{Repo: "shop", Digest: dig}},
		{name: "tag only refused", in: "registry.example/shop:v2", wantErr: "not pinned by digest"},
		{name: "no tag no digest", in: "registry.example/shop", wantErr: "not pinned by digest"},
		{name: "registry port tag only", in: "localhost:5000/shop:v2", wantErr: "not pinned by digest"},
		{name: "short digest", in: "shop@sha256:abc", wantErr: "64 lower-case hex"},
		{name: "upper-case digest", in: "shop@" + strings.ToUpper(dig), wantErr: "64 lower-case hex"},
		{name: "other algorithm", in: "shop@sha512:" + strings.Repeat("a", 64), wantErr: "want sha256"},
		{name: "upper-case repo", in: "Shop@" + dig, wantErr: "not a valid image name"},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "bad tag", in: "shop:-x@" + dig, wantErr: "not a valid tag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := kube.ParseImageRef(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseImageRef(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseImageRef(%q) error = %v, want nil", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("ParseImageRef(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseImageRef_TagRefusalExplains(t *testing.T) {
	_, err := kube.ParseImageRef("registry.example/shop:v2")
	for _, want := range []string{"registry.example/shop@sha256:", "cannot reach the registry", "crane digest"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error = %v, want it to contain %q", err, want)
		}
	}
}

// FuzzParseImageRef checks that a parsed reference round-trips and is always pinned.
func FuzzParseImageRef(f *testing.F) {
	for _, s := range []string{"registry.example/shop@" + dig, "shop:v1", "localhost:5000/a/b:c@" + dig, "@", ":@sha256:", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := kube.ParseImageRef(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(ref.Digest, "sha256:") || len(ref.Digest) != 71 {
			t.Fatalf("ParseImageRef(%q).Digest = %q, want sha256:<64 hex>", s, ref.Digest)
		}
		again, err := kube.ParseImageRef(ref.String())
		if err != nil || again != ref {
			t.Fatalf("ParseImageRef(%q) = %+v, which re-parses to %+v, %v", s, ref, again, err)
		}
	})
}
