// Package api is teal's HTTP+JSON API (spec/api.md): the Server that exposes a controller on
// the admin address, and the Client the teal command uses to drive it.
//
// The wire types are the domain's own (teal.Status, teal.Release, teal.Event, teal.Artifact),
// so that `teal status --json` and GET /api/v1/status answer the same document.
package api

import (
	"context"
	"io"

	"teal.dev/teal"
)

// Controller is what the API drives; *teal.Controller implements it.
type Controller interface {
	Status(ctx context.Context) (*teal.Status, error)
	Deploy(ctx context.Context, req teal.DeployRequest) (*teal.Release, error)
	Promote(ctx context.Context, actor string) (*teal.Release, error)
	Abort(ctx context.Context, actor string) (*teal.Release, error)
	Rollback(ctx context.Context, req teal.RollbackRequest) (*teal.Release, error)
	Release(ctx context.Context, id int64) (*teal.Release, []*teal.Event, error)
	Releases(ctx context.Context, limit int) ([]*teal.Release, error)
	// Subscribe returns live events; call the func to unsubscribe. The channel may never be
	// closed, and a subscriber that does not keep up may miss events.
	Subscribe() (<-chan *teal.Event, func())
}

// ArtifactStore stores and lists artifacts; *artifact.Store implements it.
type ArtifactStore interface {
	// PushFile stores r as the single-file artifact name of version. The bool reports
	// whether it was newly stored (false: the same digest was already stored under version).
	PushFile(ctx context.Context, version, name string, r io.Reader) (*teal.Artifact, bool, error)
	// PushTar stores the directory artifact of version from the tar stream r.
	PushTar(ctx context.Context, version string, r io.Reader) (*teal.Artifact, bool, error)
	// PushImage stores the container image reference ref, pinned by digest, as version's
	// artifact (kind "image", digest the image's).
	PushImage(ctx context.Context, version, ref string) (*teal.Artifact, bool, error)
	// List returns every stored artifact.
	List(ctx context.Context) ([]*teal.Artifact, error)
}

// LogSource finds the output file of one instance; the local provider implements it.
type LogSource interface {
	LogFile(c teal.Color, index int) (string, error)
}

// LogStreamer streams an instance's output: its last tail lines (all when tail < 0), then
// with follow what it writes until ctx ends.
type LogStreamer interface {
	LogStream(ctx context.Context, c teal.Color, index, tail int, follow bool) (io.ReadCloser, error)
}

// ReleaseDetail is the answer of GET /api/v1/releases/{id}: the release's fields and its
// events, oldest first.
type ReleaseDetail struct {
	*teal.Release
	Events []*teal.Event `json:"events"`
}

// InstanceStatus is one element of GET /api/v1/instances: an instance, the version its
// colour runs and its latest health.
type InstanceStatus struct {
	teal.Instance
	Version   string `json:"version,omitempty"`
	Healthy   bool   `json:"healthy"`
	LastError string `json:"last_error,omitempty"`
}

// ErrorBody is the JSON of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	Hint  string `json:"hint,omitempty"`
}

// DeployBody is the JSON body of POST /api/v1/releases.
type DeployBody struct {
	Version string `json:"version"`
}

// RollbackBody is the JSON body of POST /api/v1/rollback.
type RollbackBody struct {
	Force bool `json:"force"`
}

// Headers and media types of the API.
const (
	// ActorHeader names who acts for a CLI call: "cli:<os user>". Only authenticated calls
	// may set it, and only with the "cli:" prefix.
	ActorHeader = "X-Teal-Actor"
	// TarType is the Content-Type of a directory artifact upload.
	TarType = "application/x-tar"
)
