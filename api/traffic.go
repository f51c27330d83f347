package api

import (
	"context"
	"net/http"
	"time"

	"teal.dev/teal"
)

// PromoteBody is the optional JSON body of POST /api/v1/releases/current/promote.
type PromoteBody struct {
	// Full skips the remaining weighted steps: all traffic moves at once.
	Full bool `json:"full,omitempty"`
}

// PauseBody is the JSON body of POST /api/v1/pause and POST /api/v1/resume.
type PauseBody struct {
	// Requests holds (or lets go) new requests in the router instead of a weighted
	// release's weight.
	Requests bool `json:"requests,omitempty"`
	// Max bounds a request pause, like "10s"; = release.max_pause, which also caps it.
	Max string `json:"max,omitempty"`
}

// MaintenanceBody is the JSON body of POST /api/v1/maintenance.
type MaintenanceBody struct {
	On bool `json:"on"`
}

// trafficController is what a controller offers beyond Controller for weighted releases,
// pauses and maintenance; a controller without it answers 501 on those routes.
type trafficController interface {
	PromoteFull(ctx context.Context, actor string) (*teal.Release, error)
	Pause(ctx context.Context, actor string) (*teal.Release, error)
	Resume(ctx context.Context, actor string) (*teal.Release, error)
	PauseRequests(ctx context.Context, actor string, max time.Duration) error
	ResumeRequests(ctx context.Context, actor string) error
	Maintenance(ctx context.Context, actor string, on bool) error
}

func (s *Server) traffic() (trafficController, error) {
	tc, ok := s.Controller.(trafficController)
	if !ok {
		return nil, httpError(http.StatusNotImplemented, "", "this server does not pause or weigh traffic")
	}
	return tc, nil
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) error  { return s.hold(w, r, true) }
func (s *Server) resume(w http.ResponseWriter, r *http.Request) error { return s.hold(w, r, false) }

// hold answers POST /api/v1/pause (on) and /api/v1/resume: of new requests in the router
// with "requests": true, else of the weighted release's weight.
func (s *Server) hold(w http.ResponseWriter, r *http.Request, on bool) error {
	var body PauseBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	tc, err := s.traffic()
	if err != nil {
		return err
	}
	if on && body.Max != "" && !body.Requests {
		return httpError(http.StatusBadRequest, `add "requests": true`, "max applies to a request pause only")
	}
	if body.Requests {
		if on {
			var max time.Duration
			if body.Max != "" {
				if max, err = time.ParseDuration(body.Max); err != nil || max <= 0 {
					return httpError(http.StatusBadRequest, "like 10s; release.max_pause caps it", "max %q is not a duration over 0", body.Max)
				}
			}
			err = tc.PauseRequests(r.Context(), actorOf(r), max)
		} else {
			err = tc.ResumeRequests(r.Context(), actorOf(r))
		}
		if err != nil {
			return err
		}
		return s.status(w, r)
	}
	release := tc.Resume
	if on {
		release = tc.Pause
	}
	rel, err := release(r.Context(), actorOf(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rel)
	return nil
}

func (s *Server) maintenance(w http.ResponseWriter, r *http.Request) error {
	var body MaintenanceBody
	if err := decodeJSON(w, r, &body); err != nil {
		return err
	}
	tc, err := s.traffic()
	if err != nil {
		return err
	}
	if err := tc.Maintenance(r.Context(), actorOf(r), body.On); err != nil {
		return err
	}
	return s.status(w, r)
}

// PromoteFull promotes the release in progress; during weighted steps it skips the rest.
func (c *Client) PromoteFull(ctx context.Context) (*teal.Release, error) {
	return c.releaseCall(ctx, http.MethodPost, "/api/v1/releases/current/promote", PromoteBody{Full: true})
}

// Pause holds the weighted release at its weight.
func (c *Client) Pause(ctx context.Context) (*teal.Release, error) {
	return c.releaseCall(ctx, http.MethodPost, "/api/v1/pause", PauseBody{})
}

// Resume lets a paused weighted release go on.
func (c *Client) Resume(ctx context.Context) (*teal.Release, error) {
	return c.releaseCall(ctx, http.MethodPost, "/api/v1/resume", PauseBody{})
}

// PauseRequests holds new requests in the router for at most max (0: release.max_pause).
func (c *Client) PauseRequests(ctx context.Context, max time.Duration) (*teal.Status, error) {
	b := PauseBody{Requests: true}
	if max > 0 {
		b.Max = max.String()
	}
	var st teal.Status
	return &st, c.call(ctx, http.MethodPost, "/api/v1/pause", nil, b, &st)
}

// ResumeRequests lets held requests go on.
func (c *Client) ResumeRequests(ctx context.Context) (*teal.Status, error) {
	var st teal.Status
	return &st, c.call(ctx, http.MethodPost, "/api/v1/resume", nil, PauseBody{Requests: true}, &st)
}

// Maintenance turns the maintenance page on or off.
func (c *Client) Maintenance(ctx context.Context, on bool) (*teal.Status, error) {
	var st teal.Status
	return &st, c.call(ctx, http.MethodPost, "/api/v1/maintenance", nil, MaintenanceBody{On: on}, &st)
}
