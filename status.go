package teal

import "time"

// Status is what `teal status --json` and GET /api/v1/status answer.
type Status struct {
	App     string       `json:"app"`
	Live    *ColorStatus `json:"live"` // nil before the first release
	Idle    *ColorStatus `json:"idle"`
	Traffic Traffic      `json:"traffic"`
	Release *Release     `json:"release"` // the release in progress, else the latest one; nil if none
	// Environments has both colours in full: instances and their health.
	Environments []EnvStatus `json:"environments"`
	// LastDBSwitch is the latest database switchover, every step timed; Freeze is how long
	// writes were frozen.
	LastDBSwitch *SwitchReport `json:"last_db_switch,omitempty"`
	// Analysis is the latest judgement of the new colour while the release in progress is
	// in its post-switch check.
	Analysis *Judgement `json:"analysis,omitempty"`
	// Paused says what teal pause holds: the weighted release's weight, new requests, or both.
	Paused *PauseStatus `json:"paused,omitempty"`
	// Shadow is the shadow traffic report of the release in progress.
	Shadow *ShadowReport `json:"shadow,omitempty"`
	// Maintenance is on while every production request is answered 503 (teal maintenance on).
	Maintenance bool `json:"maintenance,omitempty"`
}

// PauseStatus is what is paused.
type PauseStatus struct {
	Release  string     `json:"release,omitempty"` // who holds the weighted release at its weight
	Requests bool       `json:"requests,omitempty"`
	Since    *time.Time `json:"since,omitempty"`   // requests held since
	Waiting  int        `json:"waiting,omitempty"` // requests waiting now
}

// ColorStatus is the summary of one colour.
type ColorStatus struct {
	Color   Color    `json:"color"`
	Version string   `json:"version,omitempty"`
	State   EnvState `json:"state"`
}

// EnvStatus is one colour's environment with its instances' health.
type EnvStatus struct {
	Environment
	Health []InstanceHealth `json:"health,omitempty"`
	// EndpointRequests counts requests that arrived at the colour's own endpoint (the
	// address its DNS target names), and EndpointLast when the last one did: after a
	// switch, the old colour's are clients that ignore TTLs. Only with dns: configured.
	EndpointRequests int64      `json:"endpoint_requests,omitempty"`
	EndpointLast     *time.Time `json:"endpoint_last,omitempty"`
	// Requests counts the production requests the router answered from this colour since the
	// server started; Errors those that failed (5xx or upstream error); OpenConnections the
	// requests and upgraded connections open now. Rates come from two readings.
	Requests        int64 `json:"requests"`
	Errors          int64 `json:"errors"`
	OpenConnections int64 `json:"open_connections"`
	// LongLived counts the WebSockets and event streams open now (part of OpenConnections):
	// after a switch, those on the old colour last until release.long_drain.
	LongLived int64 `json:"long_lived"`
	// DBLag is the colour's copy's replication lag as last measured (database: configured).
	DBLag *DBLag `json:"db_lag,omitempty"`
}

// InstanceHealth is the latest health of one instance.
type InstanceHealth struct {
	Index     int    `json:"index"`
	Addr      string `json:"addr"`
	Healthy   bool   `json:"healthy"`
	LastError string `json:"last_error,omitempty"`
}

// DeployRequest starts a release.
type DeployRequest struct {
	Version string `json:"version"`
	Actor   string `json:"-"`
}

// RollbackRequest sends traffic back to the previous colour.
type RollbackRequest struct {
	Force bool   `json:"force"`
	Actor string `json:"-"`
}
