// Package teal is the domain of a blue-green release orchestrator: the colours, versions,
// environments and releases it manages, the Controller that moves a release through its
// phases, and the small interfaces the Controller consumes (Provider, Router, Store).
//
// Implementations live in packages named for what they drive: local (processes on this
// machine), proxy (the built-in HTTP router), sqlite (the state store), and so on. The wiring
// is explicit, in cmd/teal.
package teal

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Color names one of the two complete environments.
type Color string

// The two colours.
const (
	Blue  Color = "blue"
	Green Color = "green"
)

// Colors lists both colours in a stable order.
var Colors = [2]Color{Blue, Green}

// Other returns the opposite colour.
func (c Color) Other() Color {
	if c == Blue {
		return Green
	}
	return Blue
}

// Valid reports whether c is blue or green.
func (c Color) Valid() bool { return c == Blue || c == Green }

// ParseColor parses "blue" or "green".
func ParseColor(s string) (Color, error) {
	c := Color(s)
	if !c.Valid() {
		return "", fmt.Errorf("colour %q: want blue or green", s)
	}
	return c, nil
}

// Phase is where a release is in its lifecycle (spec/README.md), including its terminal
// phases, which double as outcomes.
type Phase string

// Phases in lifecycle order, then the terminal ones.
const (
	PhaseProvisioning    Phase = "provisioning"
	PhaseDatabase        Phase = "database"
	PhaseVerifying       Phase = "verifying"
	PhaseAwaitingRelease Phase = "awaiting-release"
	PhaseSwitching       Phase = "switching"
	PhaseReleased        Phase = "released"
)

// Outcome is how a release ended. The zero value means it has not ended.
type Outcome string

// Outcomes.
const (
	OutcomeReleased   Outcome = "released"
	OutcomeFailed     Outcome = "failed"
	OutcomeAborted    Outcome = "aborted"
	OutcomeRolledBack Outcome = "rolled-back"
)

// EnvState is the state of one colour's environment.
type EnvState string

// Environment states.
const (
	EnvEmpty        EnvState = "empty"
	EnvProvisioning EnvState = "provisioning"
	EnvReady        EnvState = "ready"
	EnvLive         EnvState = "live"
	EnvDraining     EnvState = "draining"
	EnvStandby      EnvState = "standby"
	EnvTerminated   EnvState = "terminated"
)

// StepState is the state of one step of a release.
type StepState string

// Step states.
const (
	StepRunning StepState = "running"
	StepDone    StepState = "done"
	StepFailed  StepState = "failed"
	StepSkipped StepState = "skipped"
)

// Step is one recorded action of a release, persisted before and after it acts.
type Step struct {
	Name     string     `json:"name"`
	State    StepState  `json:"state"`
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// Duration is how long the step took, or has been running.
func (s Step) Duration(now time.Time) time.Duration {
	if s.Finished != nil {
		return s.Finished.Sub(s.Started)
	}
	return now.Sub(s.Started)
}

// Release is one attempt to take a version to production.
type Release struct {
	ID      int64    `json:"id"`
	Version string   `json:"version"`
	Digest  string   `json:"digest"`
	Color   Color    `json:"color"`           // the colour being released to
	From    Color    `json:"from,omitempty"`  // the colour that was live when it started; "" on a first release
	Phase   Phase    `json:"phase"`           // the last phase entered
	Outcome *Outcome `json:"outcome"`         // nil while in progress
	Actor   string   `json:"actor"`           // who started it
	Error   string   `json:"error,omitempty"` // why it failed, was aborted or rolled back
	Steps   []Step   `json:"steps"`

	Created  time.Time  `json:"created"`
	Promoted *time.Time `json:"promoted,omitempty"` // when the gate opened
	Switched *time.Time `json:"switched,omitempty"` // when traffic moved
	Finished *time.Time `json:"finished,omitempty"`
}

// Done reports whether the release has ended.
func (r *Release) Done() bool { return r.Outcome != nil }

// First reports whether this is the app's first release (nothing was live).
func (r *Release) First() bool { return r.From == "" }

// Instance is one running copy of a version in a colour.
type Instance struct {
	Color   Color     `json:"color"`
	Index   int       `json:"index"`
	Addr    string    `json:"addr"` // host:port the router and health checks use
	PID     int       `json:"pid,omitempty"`
	Started time.Time `json:"started"`
	// Identity guards against PID reuse when an instance is re-adopted: for local processes
	// it is the process start time as the kernel reports it.
	Identity string `json:"identity,omitempty"`
	Restarts int    `json:"restarts"`
}

// Environment is one colour's complete system: its version, instances and state.
type Environment struct {
	Color     Color      `json:"color"`
	Version   string     `json:"version,omitempty"`
	Digest    string     `json:"digest,omitempty"`
	State     EnvState   `json:"state"`
	Since     time.Time  `json:"since"`
	Instances []Instance `json:"instances,omitempty"`
	// RetireAt is when a standby environment will be terminated.
	RetireAt *time.Time `json:"retire_at,omitempty"`
	// Database is the colour's database, when the database step is on.
	Database *DBEnv `json:"database,omitempty"`
	// DBRetireAt is when the database of a colour that is no longer live is dropped
	// (database.keep_old_database after it stopped being live).
	DBRetireAt *time.Time `json:"db_retire_at,omitempty"`
}

// Traffic is the share of production traffic, in percent, each colour receives. Both zero
// means nothing is live yet.
type Traffic struct {
	Blue  int `json:"blue"`
	Green int `json:"green"`
}

// All returns a split that sends everything to c.
func All(c Color) Traffic {
	if c == Blue {
		return Traffic{Blue: 100}
	}
	return Traffic{Green: 100}
}

// Of returns c's share.
func (t Traffic) Of(c Color) int {
	if c == Blue {
		return t.Blue
	}
	return t.Green
}

// Routes is the complete routing decision the controller hands a Router.
type Routes struct {
	Traffic Traffic
	// Preview is the colour the preview endpoint serves: the idle one; "" for none.
	Preview Color
	// Epoch names the split in force: the id of the release whose weighted steps set it, 0
	// otherwise. Sticky-session cookies carry it, so that a cookie given during one release
	// does not pin a client in the next.
	Epoch int64
}

// System is the persisted state of the whole app: which colour is live, the traffic split and
// both environments. It is the controller's source of truth after a restart.
type System struct {
	Live    Color   `json:"live,omitempty"`
	Traffic Traffic `json:"traffic"`
	// Epoch is the release whose weighted steps set Traffic; 0 when one colour has it all.
	Epoch        int64                  `json:"epoch,omitempty"`
	Environments map[Color]*Environment `json:"environments"`
	// DNS is what teal last set in DNS (dns: configured), the compare-and-swap base of the
	// next change.
	DNS *DNSState `json:"dns,omitempty"`
	// LastDBSwitch is the timing of the latest database switchover (the freeze window).
	LastDBSwitch *SwitchReport `json:"last_db_switch,omitempty"`
}

// Env returns the environment of c, creating an empty one if needed.
func (s *System) Env(c Color) *Environment {
	if s.Environments == nil {
		s.Environments = make(map[Color]*Environment)
	}
	e := s.Environments[c]
	if e == nil {
		e = &Environment{Color: c, State: EnvEmpty}
		s.Environments[c] = e
	}
	return e
}

// Event is one thing that happened, with who or what caused it.
type Event struct {
	ID        int64          `json:"id"`
	ReleaseID int64          `json:"release_id,omitempty"`
	Time      time.Time      `json:"time"`
	Kind      string         `json:"kind"` // phase, step, traffic, health, action, error
	Actor     string         `json:"actor,omitempty"`
	Message   string         `json:"message"`
	Attrs     map[string]any `json:"attrs,omitempty"`
}

// Event kinds.
const (
	EventPhase   = "phase"
	EventStep    = "step"
	EventTraffic = "traffic"
	EventHealth  = "health"
	EventAction  = "action"
	EventError   = "error"
)

// Actors that are not people.
const (
	ActorAuto   = "auto"
	ActorSystem = "teal"
)

// LaunchRequest asks a Provider to start a colour's instances.
type LaunchRequest struct {
	Color    Color
	Version  string
	Digest   string
	Artifact string // path of the unpacked, read-only artifact
	Env      map[string]string
}

// Provider starts and stops a colour's instances.
type Provider interface {
	// Launch starts every instance of req.Color and returns them as soon as they are started;
	// health is the caller's concern. Instances already running for that colour are stopped
	// first.
	Launch(ctx context.Context, req LaunchRequest) ([]Instance, error)
	// Adopt takes over instances recorded by an earlier server process that are still
	// running (and are who they claim to be), restarting those that are gone.
	Adopt(ctx context.Context, req LaunchRequest, recorded []Instance) ([]Instance, error)
	// Stop stops every instance of c: stop signal, then kill after the stop timeout.
	Stop(ctx context.Context, c Color) error
	// Detach lets instances outlive the server: supervision stops, processes keep running.
	Detach()
}

// Router moves traffic between colours. It is given only healthy instances.
type Router interface {
	// SetBackends replaces the instances of c that may receive traffic.
	SetBackends(ctx context.Context, c Color, addrs []string) error
	// Route installs a new split, atomically: every request that starts after Route returns
	// is routed by it; requests in flight finish where they are.
	Route(ctx context.Context, r Routes) error
	// Drain waits until requests to c that are in flight have finished, or ctx is done.
	Drain(ctx context.Context, c Color) error
}

// Store persists releases, events and the system state. Implementations write atomically.
type Store interface {
	CreateRelease(ctx context.Context, r *Release) error // assigns r.ID
	UpdateRelease(ctx context.Context, r *Release) error
	Release(ctx context.Context, id int64) (*Release, error)       // ErrNotFound
	Releases(ctx context.Context, limit int) ([]*Release, error)   // newest first
	AddEvent(ctx context.Context, e *Event) error                  // assigns e.ID
	Events(ctx context.Context, releaseID int64) ([]*Event, error) // oldest first
	System(ctx context.Context) (*System, error)                   // empty System when none saved
	SaveSystem(ctx context.Context, s *System) error
}

// Errors the controller returns; the API maps them to HTTP statuses and the CLI to exit codes.
var (
	ErrNotFound   = errors.New("not found")
	ErrConflict   = errors.New("conflict")    // a release in progress, nothing to promote, …
	ErrRefused    = errors.New("refused")     // a gate or analysis said no
	ErrInvalid    = errors.New("invalid")     // bad input
	ErrNotHealthy = errors.New("not healthy") // instances failed their health checks
)

// Error is an error with a hint for the user; it wraps a sentinel for classification.
type Error struct {
	Kind error  // one of the Err sentinels
	Msg  string // what went wrong
	Hint string // what to do next, may be empty
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Kind }

// Errorf makes an *Error of kind with a hint.
func Errorf(kind error, hint, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// HintOf returns the hint carried by err, if any.
func HintOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Hint
	}
	return ""
}

// Artifact is an immutable, content-addressed build of a version: teal's AMI.
type Artifact struct {
	Version string    `json:"version"`
	Digest  string    `json:"digest"` // "sha256:<hex>"
	Size    int64     `json:"size"`
	Kind    string    `json:"kind"` // "file" or "dir"
	Pushed  time.Time `json:"pushed"`
	// Path is the unpacked, read-only copy instances run from.
	Path string `json:"path,omitempty"`
}

// Artifacts resolves a version to its stored artifact.
type Artifacts interface {
	Get(ctx context.Context, version string) (*Artifact, error) // ErrNotFound
}

// Health watches instances and says which are healthy. An instance becomes healthy after
// health.healthy_after consecutive passes and unhealthy after health.unhealthy_after failures.
type Health interface {
	// Watch replaces the instances watched for c. onChange is called, from the monitor's own
	// goroutine, with the addresses of c's healthy instances every time that set changes
	// (including to empty), and never concurrently for the same colour.
	Watch(c Color, instances []Instance, onChange func(healthy []string))
	// Unwatch stops watching c's instances.
	Unwatch(c Color)
	// State is the latest health of c's instances, in index order.
	State(c Color) []InstanceHealth
	// Wait returns nil once every watched instance of c is healthy; when ctx ends first it
	// returns an error naming each instance that is not, with its last error.
	Wait(ctx context.Context, c Color) error
}
