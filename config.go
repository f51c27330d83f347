package teal

import (
	"time"
)

// Config is one app's teal.yaml (spec/config.md). Only the keys of capabilities that exist are
// fields here; the parser refuses keys of capabilities not built yet with "not supported yet".
type Config struct {
	// Path is the file the config was read from; relative paths resolve against its directory.
	Path string `yaml:"-"`

	App            string `yaml:"app"`              // required
	Provider       string `yaml:"provider"`         // = local
	Router         string `yaml:"router"`           // = builtin
	DataDir        string `yaml:"data_dir"`         // = .teal (made absolute by LoadConfig)
	Listen         string `yaml:"listen"`           // = 127.0.0.1:8080
	Preview        string `yaml:"preview"`          // = "" (none)
	Admin          string `yaml:"admin"`            // = 127.0.0.1:7070
	AdminTokenFile string `yaml:"admin_token_file"` // = DataDir/admin.token
	// TokensFile names more API and dashboard tokens, one "NAME TOKEN" per line; each
	// acts as its name (api:NAME, dashboard:NAME). = "" (only the admin token).
	TokensFile string `yaml:"tokens_file"`
	// MetricsToken, when set, is the bearer token GET /metrics requires. = "" (open).
	MetricsToken string `yaml:"metrics_token"`

	Run      RunConfig      `yaml:"run"`
	Health   HealthConfig   `yaml:"health"`
	Release  ReleaseConfig  `yaml:"release"`
	Database DatabaseConfig `yaml:"database"`
	DNS      DNSConfig      `yaml:"dns"`
	Verify   VerifyConfig   `yaml:"verify"`
	Notify   NotifyConfig   `yaml:"notify"`
	Sessions SessionsConfig `yaml:"sessions"`
	HAProxy  HAProxyConfig  `yaml:"haproxy"`
	// Kubernetes is provider: kubernetes's section (config_kube.go).
	Kubernetes KubernetesConfig `yaml:"kubernetes"`
}

// RunConfig says how one instance of a version starts (local provider).
type RunConfig struct {
	Command     []string          `yaml:"command"`      // = ["{artifact}"]
	Dir         string            `yaml:"dir"`          // = "{artifact_dir}"
	Env         map[string]string `yaml:"env"`          // extra environment
	Instances   int               `yaml:"instances"`    // = 2
	StopSignal  string            `yaml:"stop_signal"`  // = TERM
	StopTimeout time.Duration     `yaml:"stop_timeout"` // = 30s
	Restart     string            `yaml:"restart"`      // = on-failure | never
	// Launch (provider: exec) creates a colour's instances and prints their addresses as
	// JSON; Terminate removes them. Placeholders {color} {version} {digest} {artifact}
	// {instances} {app}.
	Launch    []string `yaml:"launch"`
	Terminate []string `yaml:"terminate"`
}

// HealthConfig says how instances are health-checked.
type HealthConfig struct {
	Path           string        `yaml:"path"`            // = /healthz
	Interval       time.Duration `yaml:"interval"`        // = 1s
	Timeout        time.Duration `yaml:"timeout"`         // = 2s
	HealthyAfter   int           `yaml:"healthy_after"`   // = 2
	UnhealthyAfter int           `yaml:"unhealthy_after"` // = 3
	Deadline       time.Duration `yaml:"deadline"`        // = 2m
}

// ReleaseConfig says how a release passes its gate and switches.
type ReleaseConfig struct {
	Approval     string        `yaml:"approval"`      // = manual | auto
	AutoAfter    time.Duration `yaml:"auto_after"`    // = 0s
	Strategy     string        `yaml:"strategy"`      // = switch
	DrainTimeout time.Duration `yaml:"drain_timeout"` // = 30s
	KeepOld      time.Duration `yaml:"keep_old"`      // = 30m
	// Analysis judges the new colour after the switch (PostCheck).
	Analysis AnalysisConfig `yaml:"analysis"`
	// PostCheck is how long analysis watches the new colour after the switch; a failing
	// analysis rolls back. = 0 (off).
	PostCheck time.Duration `yaml:"post_check"`
	// Window restricts when promotion is allowed; nil Allow = always.
	Window WindowConfig `yaml:"window"`
	// Steps are the weighted strategy's shares of traffic for the new colour, in percent;
	// 100 is implied last.
	Steps []int `yaml:"steps"`
	// StepHold is the time at each step before the analysis decides. = DefaultStepHold.
	StepHold time.Duration `yaml:"step_hold"`
	// Sticky keeps a client on the colour it first got during weighted steps. = true.
	Sticky bool `yaml:"sticky"`
	// StickyExisting keeps clients that arrive with an app session (any cookie) on the old
	// colour until the last step. = false.
	StickyExisting bool `yaml:"sticky_existing"`
	// LongDrain is how long WebSockets, SSE and streams on the old colour may go on after a
	// switch; then they are closed politely (WebSocket 1001). = DefaultLongDrain.
	LongDrain time.Duration `yaml:"long_drain"`
	// MaxPause bounds teal pause --requests; then the router resumes by itself.
	// = DefaultMaxPause.
	MaxPause time.Duration `yaml:"max_pause"`
}

// Defaults of the config keys.
const (
	DefaultProvider       = "local"
	DefaultRouter         = "builtin"
	DefaultDataDir        = ".teal"
	DefaultListen         = "127.0.0.1:8080"
	DefaultAdmin          = "127.0.0.1:7070"
	DefaultInstances      = 2
	DefaultStopSignal     = "TERM"
	DefaultStopTimeout    = 30 * time.Second
	DefaultRestart        = "on-failure"
	DefaultHealthPath     = "/healthz"
	DefaultHealthInterval = time.Second
	DefaultHealthTimeout  = 2 * time.Second
	DefaultHealthyAfter   = 2
	DefaultUnhealthyAfter = 3
	DefaultHealthDeadline = 2 * time.Minute
	DefaultApproval       = "manual"
	DefaultStrategy       = "switch"
	DefaultDrainTimeout   = 30 * time.Second
	DefaultKeepOld        = 30 * time.Minute
)

// DefaultConfig returns a Config with every default set and no app name.
func DefaultConfig() Config {
	return Config{
		Provider: DefaultProvider,
		Router:   DefaultRouter,
		DataDir:  DefaultDataDir,
		Listen:   DefaultListen,
		Admin:    DefaultAdmin,
		Run: RunConfig{
			Command:     []string{"{artifact}"},
			Dir:         "{artifact_dir}",
			Instances:   DefaultInstances,
			StopSignal:  DefaultStopSignal,
			StopTimeout: DefaultStopTimeout,
			Restart:     DefaultRestart,
		},
		Health: HealthConfig{
			Path:           DefaultHealthPath,
			Interval:       DefaultHealthInterval,
			Timeout:        DefaultHealthTimeout,
			HealthyAfter:   DefaultHealthyAfter,
			UnhealthyAfter: DefaultUnhealthyAfter,
			Deadline:       DefaultHealthDeadline,
		},
		Release: ReleaseConfig{
			Approval:     DefaultApproval,
			Strategy:     DefaultStrategy,
			DrainTimeout: DefaultDrainTimeout,
			KeepOld:      DefaultKeepOld,
			Analysis: AnalysisConfig{
				MaxErrorRate: DefaultMaxErrorRate,
				MaxP99:       DefaultMaxP99,
				MinRequests:  DefaultMinRequests,
			},
			StepHold:  DefaultStepHold,
			Sticky:    true,
			LongDrain: DefaultLongDrain,
			MaxPause:  DefaultMaxPause,
		},
		Verify: VerifyConfig{Timeout: DefaultVerifyTimeout, Shadow: ShadowConfig{
			Duration:    DefaultShadowDuration,
			Compare:     DefaultShadowCompare,
			MaxMismatch: DefaultShadowMaxMismatch,
		}},
		Database: DatabaseConfig{
			Mode:            DefaultDatabaseMode,
			Engine:          DefaultDatabaseEngine,
			NameTemplate:    DefaultNameTemplate,
			Migrations:      DefaultMigrations,
			Verify:          DefaultVerify,
			MaxLag:          DefaultMaxLag,
			FreezeTimeout:   DefaultFreezeTimeout,
			ReverseSync:     true,
			KeepOldDatabase: DefaultKeepOldDatabase,
			CloneStrategy:   DefaultCloneStrategy,
		},
		DNS:        DefaultDNSConfig(),
		Kubernetes: KubernetesConfig{Namespace: DefaultKubeNamespace, Port: DefaultKubePort},
	}
}
