package teal

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// configEnv returns a lookup function over vars.
func configEnv(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// parseConfigString parses src as teal.yaml with vars as the environment.
func parseConfigString(t *testing.T, src string, vars map[string]string) (Config, error) {
	t.Helper()
	return ParseConfig(strings.NewReader(src), "teal.yaml", configEnv(vars))
}

// mustParseConfig parses src and fails the test on any error.
func mustParseConfig(t *testing.T, src string, vars map[string]string) Config {
	t.Helper()
	cfg, err := parseConfigString(t, src, vars)
	if err != nil {
		t.Fatalf("ParseConfig:\n%v", err)
	}
	return cfg
}

// parseConfigErrors parses src, which must be invalid, and returns its problems.
func parseConfigErrors(t *testing.T, src string, vars map[string]string) ConfigErrors {
	t.Helper()
	_, err := parseConfigString(t, src, vars)
	if err == nil {
		t.Fatalf("ParseConfig(%q) = nil error, want errors", src)
	}
	var errs ConfigErrors
	if !errors.As(err, &errs) {
		t.Fatalf("ParseConfig error is %T (%v), want ConfigErrors", err, err)
	}
	for _, e := range errs {
		if e.File != "teal.yaml" || e.Msg == "" {
			t.Fatalf("error %#v: want File teal.yaml and a message", e)
		}
	}
	return errs
}

func readConfigTestdata(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "config", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// fullEnv is the environment full.yaml expects.
func fullEnv() map[string]string {
	return map[string]string{
		"SHOP_SECRET":        "s3cret",
		"PROD_DATABASE_URL":  "postgres://teal:hunter2@db.internal:5432/shop?sslmode=disable",
		"PREPROD_SERVER_URL": "host=preprod.internal port=5433 user=teal password='hunter 3' dbname=postgres",
	}
}

func TestParseConfig_Full(t *testing.T) {
	cfg := mustParseConfig(t, readConfigTestdata(t, "full.yaml"), fullEnv())
	want := Config{
		App:            "shop",
		Provider:       "local",
		Router:         "builtin",
		DataDir:        "/var/lib/teal/shop",
		Listen:         "0.0.0.0:8080",
		Preview:        "127.0.0.1:8081",
		Admin:          "127.0.0.1:7070",
		AdminTokenFile: "/etc/teal/shop.token",
		Run: RunConfig{
			Command: []string{"{artifact}/bin/shop", "--port", "{port}", "--color", "{color}"},
			Dir:     "{artifact_dir}",
			Env: map[string]string{
				"SHOP_MODE":           "production",
				"SHOP_SECRET":         "s3cret",
				"SHOP_PRICE":          "$5",
				"SHOP_INSTANCE_LABEL": "shop-{version}-{instance}",
			},
			Instances:   3,
			StopSignal:  "INT",
			StopTimeout: 20 * time.Second,
			Restart:     "never",
		},
		Health: HealthConfig{
			Path:           "/healthz",
			Interval:       500 * time.Millisecond,
			Timeout:        time.Second,
			HealthyAfter:   3,
			UnhealthyAfter: 2,
			Deadline:       90 * time.Second,
		},
		Release: ReleaseConfig{
			Approval:     "auto",
			AutoAfter:    5 * time.Minute,
			Strategy:     "switch",
			DrainTimeout: 45 * time.Second,
			KeepOld:      time.Hour,
			Analysis:     DefaultConfig().Release.Analysis,
			StepHold:     DefaultStepHold,
			Sticky:       true,
			LongDrain:    DefaultLongDrain,
			MaxPause:     DefaultMaxPause,
		},
		Verify: DefaultConfig().Verify,
		Database: DatabaseConfig{
			Mode:            "clone",
			Engine:          "postgres",
			Production:      "postgres://teal:hunter2@db.internal:5432/shop?sslmode=disable",
			Preproduction:   "host=preprod.internal port=5433 user=teal password='hunter 3' dbname=postgres",
			NameTemplate:    "{app}_{color}_{version}",
			Migrations:      "{artifact}/db/migrations",
			Verify:          "checksums",
			MaxLag:          32 << 20,
			FreezeTimeout:   5 * time.Second,
			ReverseSync:     false,
			KeepOldDatabase: 48 * time.Hour,
			CloneStrategy:   "dump",
		},
		DNS:        DefaultDNSConfig(), // full.yaml has no dns section: testdata/config/dns.yaml does
		Kubernetes: KubernetesConfig{Namespace: DefaultKubeNamespace, Port: DefaultKubePort},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("ParseConfig(full.yaml) =\n%+v\nwant\n%+v", cfg, want)
	}
}

func TestParseConfig_Defaults(t *testing.T) {
	tests := []struct {
		name string
		src  string
	}{
		{"minimal", readConfigTestdata(t, "minimal.yaml")},
		{"empty sections", "app: shop\nrun:\nhealth: {}\nrelease: ~\ndatabase:\n"},
		{"database mode none", "app: shop\ndatabase: {mode: none}\n"},
		{"null values keep defaults", "app: shop\nlisten: ~\nrun:\n  command:\n  instances: null\n"},
		{"comments and document markers", "# teal\n---\napp: shop # name\n...\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParseConfig(t, tt.src, nil)
			want := DefaultConfig()
			want.App = "shop"
			if !reflect.DeepEqual(cfg, want) {
				t.Fatalf("ParseConfig =\n%+v\nwant\n%+v", cfg, want)
			}
		})
	}
}

func TestParseConfig_Normalises(t *testing.T) {
	tests := []struct {
		name, src  string
		signal     string
		preview    string
		wantListen string
	}{
		{"SIG prefix", "app: a\nrun: {stop_signal: SIGTERM}\n", "TERM", "", DefaultListen},
		{"lower case", "app: a\nrun: {stop_signal: usr2}\n", "USR2", "", DefaultListen},
		{"preview none", "app: a\npreview: none\n", "TERM", "", DefaultListen},
		{"preview empty", "app: a\npreview: \"\"\n", "TERM", "", DefaultListen},
		{"preview set", "app: a\npreview: 127.0.0.1:8081\n", "TERM", "127.0.0.1:8081", DefaultListen},
		{"port 0 everywhere", "app: a\nlisten: 127.0.0.1:0\npreview: 127.0.0.1:0\nadmin: 127.0.0.1:0\n", "TERM", "127.0.0.1:0", "127.0.0.1:0"},
		{"quoted number", "app: a\nlisten: ':8080'\nrun: {instances: \"3\"}\n", "TERM", "", ":8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParseConfig(t, tt.src, nil)
			if cfg.Run.StopSignal != tt.signal {
				t.Fatalf("Run.StopSignal = %q, want %q", cfg.Run.StopSignal, tt.signal)
			}
			if cfg.Preview != tt.preview {
				t.Fatalf("Preview = %q, want %q", cfg.Preview, tt.preview)
			}
			if cfg.Listen != tt.wantListen {
				t.Fatalf("Listen = %q, want %q", cfg.Listen, tt.wantListen)
			}
		})
	}
}

func TestParseConfig_BadValues(t *testing.T) {
	tests := []struct {
		name string
		src  string // appended to "app: shop\n" unless it sets app itself
		key  string
		want string // in the message
	}{
		{"app missing", "listen: 127.0.0.1:8080", "app", "required"},
		{"app upper case", "app: Shop", "app", `"Shop": want a lowercase letter`},
		{"app leading digit", "app: 1shop", "app", "want a lowercase letter"},
		{"app underscore", "app: my_shop", "app", "want a lowercase letter"},
		{"app too long", "app: " + strings.Repeat("a", 42), "app", "up to 40"},
		{"app a list", "app: [shop]", "app", "want a string, got a list"},
		{"provider unknown", "provider: docker", "provider", `"docker": want local`},
		{"router unknown", "router: nginx", "router", "want builtin"},
		{"data_dir empty", "data_dir: ''", "data_dir", "empty"},
		{"listen no port", "listen: 127.0.0.1", "listen", `"127.0.0.1": want host:port`},
		{"listen port name", "listen: 127.0.0.1:http", "listen", "want a port number"},
		{"listen port too big", "listen: 127.0.0.1:65536", "listen", "want a port number 1..65535"},
		{"listen negative port", "listen: 127.0.0.1:-1", "listen", "want a port number"},
		{"listen empty", "listen: ''", "listen", "want host:port"},
		{"preview bad", "preview: 8081", "preview", "want host:port"},
		{"admin bad", "admin: 'localhost:'", "admin", "want a port number"},
		{"admin same as listen", "listen: 127.0.0.1:9000\nadmin: 127.0.0.1:9000", "admin", "same port as listen"},
		{"preview same as listen", "listen: 127.0.0.1:9000\npreview: 127.0.0.1:9000", "preview", "same port as listen"},
		{"admin on listen's wildcard port", "listen: :9000\nadmin: 127.0.0.1:9000", "admin", "same port as listen"},
		{"command empty", "run: {command: []}", "run.command", "empty"},
		{"command a string", "run: {command: ./shop}", "run.command", `"./shop": want a list`},
		{"command program empty", `run: {command: ["", "x"]}`, "run.command[0]", "empty"},
		{"command element a mapping", `run: {command: ["./shop", {a: b}]}`, "run.command[1]", "want a string, got a mapping"},
		{"command unknown placeholder", `run: {command: ["./shop", "--port={prot}"]}`, "run.command[1]", "unknown placeholder {prot}"},
		{"dir unknown placeholder", "run: {dir: '{artifact_dri}'}", "run.dir", "unknown placeholder {artifact_dri}"},
		{"dir empty", "run: {dir: ''}", "run.dir", "empty"},
		{"env not a mapping", "run: {env: [A]}", "run.env", "want a mapping of NAME: value"},
		{"env bad name", "run: {env: {1A: x}}", "run.env", `"1A": not a variable name`},
		{"env name with dash", "run: {env: {MY-VAR: x}}", "run.env", "not a variable name"},
		{"env reserved PORT", "run: {env: {PORT: '80'}}", "run.env", `"PORT": set by teal`},
		{"env reserved DATABASE_URL", "run: {env: {DATABASE_URL: x}}", "run.env", "reserved"},
		{"env reserved TEAL_COLOR", "run: {env: {TEAL_COLOR: x}}", "run.env", "reserved"},
		{"env unknown placeholder", "run: {env: {URL: 'http://{host}'}}", "run.env.URL", "unknown placeholder {host}"},
		{"env value a list", "run: {env: {A: [1]}}", "run.env.A", "want a string"},
		{"instances zero", "run: {instances: 0}", "run.instances", `"0": want 1..64`},
		{"instances too many", "run: {instances: 65}", "run.instances", "want 1..64"},
		{"instances not a number", "run: {instances: two}", "run.instances", `"two": not a whole number`},
		{"instances fraction", "run: {instances: 1.5}", "run.instances", "not a whole number"},
		{"instances overflow", "run: {instances: 99999999999999999999}", "run.instances", "out of range"},
		{"stop_signal unknown", "run: {stop_signal: STOP}", "run.stop_signal", "want TERM, INT, QUIT, HUP, KILL, USR1 or USR2"},
		{"stop_signal number", "run: {stop_signal: 15}", "run.stop_signal", "want TERM"},
		{"stop_timeout zero", "run: {stop_timeout: 0s}", "run.stop_timeout", "want a duration over 0"},
		{"stop_timeout no unit", "run: {stop_timeout: 30}", "run.stop_timeout", `"30": not a duration: add a unit`},
		{"restart unknown", "run: {restart: always}", "run.restart", `"always": want on-failure or never`},
		{"run not a mapping", "run: ./shop", "run", "want a mapping of keys (command, dir"},
		{"health path relative", "health: {path: healthz}", "health.path", "starting with /"},
		{"health interval zero", "health: {interval: 0s}", "health.interval", "over 0"},
		{"health timeout negative", "health: {timeout: -1s}", "health.timeout", `"-1s": want a duration over 0`},
		{"health deadline words", "health: {deadline: two minutes}", "health.deadline", "not a duration (like 30s, 10m)"},
		{"health healthy_after zero", "health: {healthy_after: 0}", "health.healthy_after", "want 1 or more"},
		{"health unhealthy_after negative", "health: {unhealthy_after: -2}", "health.unhealthy_after", "want 1 or more"},
		{"health healthy_after a duration", "health: {healthy_after: 2s}", "health.healthy_after", "not a whole number"},
		{"approval unknown", "release: {approval: yes}", "release.approval", "want manual or auto"},
		{"auto_after with manual", "release: {approval: manual, auto_after: 10s}", "release.auto_after", "only used with approval: auto"},
		{"auto_after with default approval", "release: {auto_after: 1m}", "release.auto_after", "only used with approval: auto"},
		{"auto_after negative", "release: {approval: auto, auto_after: -1s}", "release.auto_after", "0 or more"},
		{"strategy unknown", "release: {strategy: canary}", "release.strategy", "want switch"},
		{"drain_timeout negative", "release: {drain_timeout: -5s}", "release.drain_timeout", "0 or more"},
		{"keep_old soon", "release: {keep_old: soon}", "release.keep_old", `teal.yaml: release.keep_old: "soon": not a duration (like 30s, 10m)`},
		{"keep_old negative", "release: {keep_old: -1m}", "release.keep_old", "0 or more"},
		{"database not a mapping", "database: clone", "database", `"clone": want a mapping of keys (mode, engine, production`},
		{"database mode unknown", "database: {mode: copy}", "database.mode", `"copy": want clone, snapshot, shared or none`},
		{"database engine mysql", "database: {engine: mysql}", "database.engine", `"mysql": want postgres`},
		{"database production required", "database: {mode: clone}", "database.production", "required with mode clone"},
		{"database production bad port", "database: {production: 'postgres://shop@db:99999/shop'}", "database.production", "not a PostgreSQL connection string (invalid port)"},
		{"database production not a DSN", "database: {production: hello}", "database.production", `"hello": not a PostgreSQL connection string`},
		{"database production no database", "database: {mode: clone, production: 'postgres://shop@db:5432'}", "database.production", "names no database"},
		{"database production a list", "database: {production: [a]}", "database.production", "want a connection string"},
		{"database preproduction bad", "database: {preproduction: 'host=db port=x'}", "database.preproduction", "invalid port"},
		{"database name_template no color", "database: {name_template: '{app}_{version}'}", "database.name_template", "must contain {color}, else both colours' copies would get the same database name"},
		{"database name_template no version", "database: {name_template: '{app}_{color}'}", "database.name_template", "must contain {version}, else the copies of two versions"},
		{"database name_template neither", "database: {name_template: shop}", "database.name_template", "must contain {color} and {version}"},
		{"database name_template unknown placeholder", "database: {name_template: '{app}_{color}_{version}_{env}'}", "database.name_template", "unknown placeholder {env}; want {app}, {color} or {version}"},
		{"database name_template empty", "database: {name_template: ''}", "database.name_template", "empty; leave it out for {app}_{color}_{version}"},
		{"database migrations placeholder", "database: {migrations: '{artifact_dir}/migrations'}", "database.migrations", "unknown placeholder {artifact_dir}; want {artifact}"},
		{"database migrations empty", "database: {migrations: ''}", "database.migrations", "empty"},
		{"database verify unknown", "database: {verify: hashes}", "database.verify", `"hashes": want rowcounts, checksums or none`},
		{"database max_lag zero", "database: {max_lag: 0}", "database.max_lag", `"0": want a size over 0`},
		{"database max_lag binary unit", "database: {max_lag: 16MiB}", "database.max_lag", `unit "MiB": want B, kB, MB, GB or TB`},
		{"database max_lag lower case", "database: {max_lag: 16mb}", "database.max_lag", `unit "mb": want MB (units are case-sensitive)`},
		{"database max_lag fraction", "database: {max_lag: 1.5GB}", "database.max_lag", "want a whole number"},
		{"database max_lag negative", "database: {max_lag: -1MB}", "database.max_lag", "not a size"},
		{"database max_lag overflow", "database: {max_lag: 99999999TB}", "database.max_lag", "out of range"},
		{"database freeze_timeout zero", "database: {freeze_timeout: 0s}", "database.freeze_timeout", "over 0"},
		{"database freeze_timeout too long", "database: {freeze_timeout: 6m}", "database.freeze_timeout", `"6m": over 5m0s`},
		{"database freeze_timeout no unit", "database: {freeze_timeout: 10}", "database.freeze_timeout", "add a unit"},
		{"database reverse_sync yes", "database: {reverse_sync: yes}", "database.reverse_sync", `"yes": want true or false`},
		{"database reverse_sync a list", "database: {reverse_sync: [true]}", "database.reverse_sync", "want true or false, got a list"},
		{"database keep_old_database negative", "database: {keep_old_database: -1h}", "database.keep_old_database", "0 or more"},
		{"database clone_strategy unknown", "database: {clone_strategy: rsync}", "database.clone_strategy", "want auto, subscription or dump"},
		{"duplicate top-level key", "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2", "listen", "duplicate key (first set on line 2)"},
		{"duplicate nested key", "run:\n  instances: 1\n  instances: 2", "run.instances", "duplicate key"},
		{"duplicate env key", "run: {env: {A: x, A: y}}", "run.env.A", "duplicate key"},
		{"merge key", "base: &b {instances: 1}\nrun:\n  <<: *b", "run.<<", "merge keys"},
		{"top level not a mapping", "", "", "want a mapping of keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			if !strings.HasPrefix(src, "app:") && tt.key != "app" {
				src = "app: shop\n" + src
			}
			if tt.name == "top level not a mapping" {
				src = "- app: shop\n"
			}
			errs := parseConfigErrors(t, src, nil)
			var found *ConfigError
			for _, e := range errs {
				if e.Key == tt.key {
					found = e
					break
				}
			}
			if found == nil {
				t.Fatalf("no error for key %q; got:\n%v", tt.key, errs)
			}
			msg := found.Error()
			prefix := "teal.yaml: " + tt.key + ": "
			if tt.key == "" {
				prefix = "teal.yaml: "
			}
			if !strings.HasPrefix(msg, prefix) {
				t.Fatalf("error = %q, want prefix %q", msg, prefix)
			}
			if !strings.Contains(msg, tt.want) {
				t.Fatalf("error = %q, want it to contain %q", msg, tt.want)
			}
			// One problem in, one error out (app missing adds nothing else).
			if len(errs) != 1 && !strings.Contains(tt.name, "merge") {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
		})
	}
}

func TestParseConfig_EnvExpansion(t *testing.T) {
	vars := map[string]string{
		"APP":     "shop",
		"PORT":    "9090",
		"N":       "4",
		"KEEP":    "2h",
		"EMPTY":   "",
		"NESTED":  "${APP}",
		"BAD_DUR": "soon",
		"SECRET":  "hunter2-{oops}",
	}
	t.Run("values", func(t *testing.T) {
		tests := []struct {
			name string
			src  string
			get  func(Config) any
			want any
		}{
			{"whole value", "app: ${APP}", func(c Config) any { return c.App }, "shop"},
			{"inside a value", "app: shop\nlisten: 127.0.0.1:${PORT}", func(c Config) any { return c.Listen }, "127.0.0.1:9090"},
			{"int", "app: shop\nrun: {instances: '${N}'}", func(c Config) any { return c.Run.Instances }, 4},
			{"duration", "app: shop\nrelease: {keep_old: '${KEEP}'}", func(c Config) any { return c.Release.KeepOld }, 2 * time.Hour},
			{"list element", "app: shop\nrun: {command: [./shop, '--port=${PORT}']}", func(c Config) any { return c.Run.Command[1] }, "--port=9090"},
			{"env value", "app: shop\nrun: {env: {P: '${PORT}'}}", func(c Config) any { return c.Run.Env["P"] }, "9090"},
			{"set but empty", "app: shop\nrun: {env: {E: 'x${EMPTY}y'}}", func(c Config) any { return c.Run.Env["E"] }, "xy"},
			{"dollar dollar", "app: shop\nrun: {env: {PRICE: '$$5 and $${APP}'}}", func(c Config) any { return c.Run.Env["PRICE"] }, "$5 and ${APP}"},
			{"lone dollar", "app: shop\nrun: {env: {Q: '$.ok $HOME $'}}", func(c Config) any { return c.Run.Env["Q"] }, "$.ok $HOME $"},
			{"not expanded twice", "app: shop\nrun: {env: {N: '${NESTED}'}}", func(c Config) any { return c.Run.Env["N"] }, "${APP}"},
			{"keys are not expanded", "app: shop\nrun:\n  env:\n    ${APP}: x\n", func(c Config) any { return len(c.Run.Env) }, 0},
			{"alias", "app: &name ${APP}\nrun: {env: {NAME: *name}}", func(c Config) any { return c.Run.Env["NAME"] }, "shop"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if tt.name == "keys are not expanded" {
					// ${APP} as a key is not a variable name: refused, not expanded.
					errs := parseConfigErrors(t, tt.src, vars)
					if got := errs[0].Key; got != "run.env" {
						t.Fatalf("error key = %q, want run.env (%v)", got, errs)
					}
					return
				}
				cfg := mustParseConfig(t, tt.src, vars)
				if got := tt.get(cfg); got != tt.want {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			})
		}
	})
	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name    string
			src     string
			key     string
			want    []string
			notWant string
		}{
			{"unset", "app: shop\nlisten: '127.0.0.1:${LISTEN_PORT}'", "listen", []string{`"127.0.0.1:${LISTEN_PORT}"`, "environment variable LISTEN_PORT is not set"}, ""},
			{"unset in list", "app: shop\nrun: {command: [./shop, '${FLAG}']}", "run.command[1]", []string{"FLAG is not set"}, ""},
			{"unset in env", "app: shop\nrun: {env: {DB: '${DB_URL}'}}", "run.env.DB", []string{"DB_URL is not set"}, ""},
			{"unterminated", "app: shop\ndata_dir: '${HOME'", "data_dir", []string{"unterminated ${"}, ""},
			{"bad name", "app: shop\ndata_dir: '${A-B}'", "data_dir", []string{"${A-B}: not a variable name"}, ""},
			{"empty name", "app: shop\ndata_dir: '${}'", "data_dir", []string{"not a variable name"}, ""},
			{"expanded value invalid", "app: shop\nrelease: {keep_old: '${BAD_DUR}'}", "release.keep_old", []string{`"${BAD_DUR}": not a duration`, `expanded to "soon"`}, ""},
			{"expanded value fails validation", "app: shop\nlisten: '${APP}'", "listen", []string{`"${APP}": want host:port`, `expanded to "shop"`}, ""},
			{"secret not echoed", "app: shop\nrun: {env: {S: '${SECRET}'}}", "run.env.S", []string{"unknown placeholder {oops}", `"${SECRET}"`}, "hunter2"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				errs := parseConfigErrors(t, tt.src, vars)
				if len(errs) != 1 {
					t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
				}
				if errs[0].Key != tt.key {
					t.Fatalf("Key = %q, want %q (%v)", errs[0].Key, tt.key, errs[0])
				}
				msg := errs[0].Error()
				for _, w := range tt.want {
					if !strings.Contains(msg, w) {
						t.Fatalf("error = %q, want it to contain %q", msg, w)
					}
				}
				if tt.notWant != "" && strings.Contains(msg, tt.notWant) {
					t.Fatalf("error = %q, must not contain %q", msg, tt.notWant)
				}
			})
		}
	})
	t.Run("each unset variable named", func(t *testing.T) {
		errs := parseConfigErrors(t, "app: shop\nlisten: '${H}:${P}'\n", nil)
		if len(errs) != 2 {
			t.Fatalf("got %d errors, want 2:\n%v", len(errs), errs)
		}
		for i, name := range []string{"H", "P"} {
			if want := "environment variable " + name + " is not set"; !strings.Contains(errs[i].Msg, want) {
				t.Fatalf("errs[%d] = %q, want %q", i, errs[i].Msg, want)
			}
		}
	})
	t.Run("nil lookup means nothing is set", func(t *testing.T) {
		_, err := ParseConfig(strings.NewReader("app: ${APP}\n"), "teal.yaml", nil)
		if err == nil || !strings.Contains(err.Error(), "APP is not set") {
			t.Fatalf("err = %v, want APP is not set", err)
		}
	})
}

func TestParseConfig_UnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		src  string
		key  string
		want string
	}{
		{"typo top level", "helth: {path: /}", "helth", "did you mean health?"},
		{"typo nested", "health: {healthy_afer: 2}", "health.healthy_afer", "did you mean healthy_after?"},
		{"transposed", "release: {keep_lod: 1m}", "release.keep_lod", "did you mean keep_old?"},
		{"case", "App2: x", "App2", "did you mean app?"},
		{"prefix of a key", "health: {unhealthy: 3}", "health.unhealthy", "did you mean unhealthy_after?"},
		{"key plus suffix", "run: {instances_per_color: 3}", "run.instances_per_color", "did you mean instances?"},
		{"in the wrong section", "command: [./shop]", "command", "did you mean run.command?"},
		{"nested in the wrong section", "release: {interval: 1s}", "release.interval", "did you mean health.interval?"},
		{"top-level key nested", "run: {listen: ':1'}", "run.listen", "did you mean listen?"},
		{"far off top level", "colour: blue", "colour", "valid keys: app, provider, router, data_dir, listen, preview, admin, admin_token_file, run, health, release, database"},
		{"typo in database", "database: {max_lgs: 1MB}", "database.max_lgs", "did you mean max_lag?"},
		{"database key at the top level", "name_template: x", "name_template", "did you mean database.name_template?"},
		{"far off nested", "health: {zzz: 1}", "health.zzz", "valid keys in health: path, interval, timeout, healthy_after, unhealthy_after, deadline"},
		{"empty key", "'': 1", "", "empty key"},
		{"mapping as key", "? [a]\n: 1", "", "keys must be plain names"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseConfigErrors(t, "app: shop\n"+tt.src+"\n", nil)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			if errs[0].Key != tt.key {
				t.Fatalf("Key = %q, want %q", errs[0].Key, tt.key)
			}
			if !strings.Contains(errs[0].Msg, tt.want) {
				t.Fatalf("Msg = %q, want it to contain %q", errs[0].Msg, tt.want)
			}
		})
	}
}

func TestParseConfig_MultipleErrors(t *testing.T) {
	errs := parseConfigErrors(t, readConfigTestdata(t, "invalid.yaml"), nil)
	// Every problem, in file order.
	wantKeys := []string{
		"app",
		"provider",
		"admin",
		"helth",
		"run.command[1]",
		"run.instances",
		"run.stop_timeout",
		"run.env",
		"release.auto_after",
		"release.keep_old",
		"release.steps",
		"database.production",
		"database.name_template",
		"database.max_lag",
	}
	var gotKeys []string
	for _, e := range errs {
		gotKeys = append(gotKeys, e.Key)
	}
	if !slices.Equal(gotKeys, wantKeys) {
		t.Fatalf("error keys = %v, want %v\n%v", gotKeys, wantKeys, errs)
	}
	lines := strings.Split(errs.Error(), "\n")
	if len(lines) != len(wantKeys) {
		t.Fatalf("Error() has %d lines, want %d", len(lines), len(wantKeys))
	}
	for i, line := range lines {
		if !strings.HasPrefix(line, "teal.yaml: "+wantKeys[i]+": ") {
			t.Fatalf("line %d = %q, want it to start with the file and key %s", i, line, wantKeys[i])
		}
	}
}

func TestParseConfig_NoRepeatedErrors(t *testing.T) {
	// A key whose value could not be decoded keeps its default: validation must not add a
	// second, misleading error about it.
	errs := parseConfigErrors(t, "app: [shop]\nrun: {command: [./a, '${X}'], instances: lots}\n", nil)
	var keys []string
	for _, e := range errs {
		keys = append(keys, e.Key)
	}
	if want := []string{"app", "run.command[1]", "run.instances"}; !slices.Equal(keys, want) {
		t.Fatalf("error keys = %v, want %v\n%v", keys, want, errs)
	}
}

func TestParseConfig_NotYAML(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"syntax", "app: [shop\n", "teal.yaml: line 1: did not find expected ',' or ']'"},
		{"tab indentation", "app: shop\nrun:\n\tinstances: 2\n", "teal.yaml: line 3"},
		{"two documents", "app: shop\n---\napp: other\n", "teal.yaml: line 2: a second YAML document"},
		{"empty", "", "teal.yaml: app: required"},
		{"only comments", "# nothing\n", "teal.yaml: app: required"},
		{"unknown anchor", "app: *nope\n", "teal.yaml: unknown anchor 'nope'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseConfigErrors(t, tt.src, nil)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			if got := errs[0].Error(); !strings.HasPrefix(got, tt.want) {
				t.Fatalf("error = %q, want prefix %q", got, tt.want)
			}
		})
	}
}

func TestParseConfig_FileName(t *testing.T) {
	_, err := ParseConfig(strings.NewReader("app: Shop\n"), "deploy/shop.yaml", nil)
	if want := `deploy/shop.yaml: app: "Shop": `; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want prefix %q", err, want)
	}
	_, err = ParseConfig(strings.NewReader("app: Shop\n"), "", nil)
	if want := `teal.yaml: app: `; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want prefix %q", err, want)
	}
}

func TestParseConfig_Testdata(t *testing.T) {
	tests := []struct {
		file  string
		valid bool
	}{
		{"full.yaml", true},
		{"minimal.yaml", true},
		{"dev.yaml", true},
		{"invalid.yaml", false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := parseConfigString(t, readConfigTestdata(t, tt.file), fullEnv())
			if (err == nil) != tt.valid {
				t.Fatalf("ParseConfig(%s) error = %v, want valid = %v", tt.file, err, tt.valid)
			}
		})
	}
}

func TestConfigError_Error(t *testing.T) {
	tests := []struct {
		name string
		err  *ConfigError
		want string
	}{
		{"full", &ConfigError{File: "teal.yaml", Key: "release.keep_old", Value: "soon", Msg: "not a duration (like 30s, 10m)"},
			`teal.yaml: release.keep_old: "soon": not a duration (like 30s, 10m)`},
		{"no value", &ConfigError{File: "teal.yaml", Key: "app", Msg: "required"}, "teal.yaml: app: required"},
		{"no key", &ConfigError{File: "teal.yaml", Msg: "line 1: bad"}, "teal.yaml: line 1: bad"},
		{"quoted value", &ConfigError{File: "t.yaml", Key: "app", Value: "a\"b\n", Msg: "bad"}, `t.yaml: app: "a\"b\n": bad`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Fatalf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfigErrors_Is(t *testing.T) {
	_, err := parseConfigString(t, "app: Shop\n", nil)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("errors.Is(%v, ErrInvalid) = false, want true", err)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Key != "app" {
		t.Fatalf("errors.As(*ConfigError) = %v, want the app error", ce)
	}
}

func TestConfig_Validate(t *testing.T) {
	t.Run("defaults with an app", func(t *testing.T) {
		c := DefaultConfig()
		c.App = "shop"
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
	})
	t.Run("defaults without an app", func(t *testing.T) {
		c := DefaultConfig()
		err := c.Validate()
		var errs ConfigErrors
		if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Key != "app" {
			t.Fatalf("Validate() = %v, want one app error", err)
		}
	})
	t.Run("names Path and normalises", func(t *testing.T) {
		c := DefaultConfig()
		c.App = "shop"
		c.Path = "/etc/teal/shop.yaml"
		c.Run.StopSignal = "sighup"
		c.Preview = "none"
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate() = %v, want nil", err)
		}
		if c.Run.StopSignal != "HUP" || c.Preview != "" {
			t.Fatalf("StopSignal, Preview = %q, %q; want HUP, \"\"", c.Run.StopSignal, c.Preview)
		}
		c.Run.Instances = 0
		c.Health.Path = "x"
		err := c.Validate()
		var errs ConfigErrors
		if !errors.As(err, &errs) || len(errs) != 2 {
			t.Fatalf("Validate() = %v, want 2 errors", err)
		}
		if want := "/etc/teal/shop.yaml: run.instances: \"0\": "; !strings.HasPrefix(errs[0].Error(), want) {
			t.Fatalf("errs[0] = %q, want prefix %q", errs[0], want)
		}
	})
	t.Run("env secret not echoed", func(t *testing.T) {
		c := DefaultConfig()
		c.App = "shop"
		c.Run.Env = map[string]string{"TOKEN": "hunter2{x}"}
		err := c.Validate()
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "run.env.TOKEN") {
			t.Fatalf("Validate() = %v, want an error on run.env.TOKEN without its value", err)
		}
	})
	t.Run("placeholders", func(t *testing.T) {
		tests := []struct {
			name string
			arg  string
			ok   bool
		}{
			{"all known", "{artifact} {artifact_dir} {port} {color} {version} {instance}", true},
			{"shell variable", "${HOME}/x", true},
			{"brace expansion", "{1..3}", true},
			{"json", `{"a": 1}`, true},
			{"unclosed", "{port", true},
			{"doubled braces", "{{port}}", true},
			{"unknown", "{app}", false},
			{"unknown after known", "{port}-{colour}", false},
			{"unknown inside braces", "{{colour}}", false},
			{"many open braces", strings.Repeat("{", 10000) + "port}", true},
			{"shell variable then unknown", "${A}{b}", false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := DefaultConfig()
				c.App = "shop"
				c.Run.Command = []string{"./shop", tt.arg}
				if err := c.Validate(); (err == nil) != tt.ok {
					t.Fatalf("Validate() with %q = %v, want ok = %v", tt.arg, err, tt.ok)
				}
			})
		}
	})
}

func TestConfig_InstanceEnvReserved(t *testing.T) {
	got := DefaultConfig().InstanceEnvReserved()
	want := []string{"PORT", "TEAL_APP", "TEAL_COLOR", "TEAL_VERSION", "TEAL_INSTANCE", "DATABASE_URL"}
	if !slices.Equal(got, want) {
		t.Fatalf("InstanceEnvReserved() = %v, want %v", got, want)
	}
	got[0] = "X" // callers may modify their copy
	if DefaultConfig().InstanceEnvReserved()[0] != "PORT" {
		t.Fatal("InstanceEnvReserved shares its slice between calls")
	}
}

func TestLoadConfig(t *testing.T) {
	t.Run("resolves paths against the config's directory", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "teal.yaml")
		writeConfigFile(t, path, "app: shop\n")
		cfg, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Path != path {
			t.Fatalf("Path = %q, want %q", cfg.Path, path)
		}
		if want := filepath.Join(dir, ".teal"); cfg.DataDir != want {
			t.Fatalf("DataDir = %q, want %q", cfg.DataDir, want)
		}
		if want := filepath.Join(dir, ".teal", "admin.token"); cfg.AdminTokenFile != want {
			t.Fatalf("AdminTokenFile = %q, want %q", cfg.AdminTokenFile, want)
		}
	})
	t.Run("relative path argument", func(t *testing.T) {
		dir := t.TempDir()
		writeConfigFile(t, filepath.Join(dir, "sub", "teal.yaml"), "app: shop\ndata_dir: ../state\nadmin_token_file: secrets/token\n")
		t.Chdir(dir)
		cfg, err := LoadConfig(filepath.Join("sub", "teal.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		// t.TempDir may sit behind a symlink; compare against what Abs makes of it.
		abs, err := filepath.Abs("sub")
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(abs, "teal.yaml"); cfg.Path != want {
			t.Fatalf("Path = %q, want %q", cfg.Path, want)
		}
		if want := filepath.Join(filepath.Dir(abs), "state"); cfg.DataDir != want {
			t.Fatalf("DataDir = %q, want %q", cfg.DataDir, want)
		}
		if want := filepath.Join(abs, "secrets", "token"); cfg.AdminTokenFile != want {
			t.Fatalf("AdminTokenFile = %q, want %q", cfg.AdminTokenFile, want)
		}
	})
	t.Run("absolute paths kept", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "teal.yaml")
		data := filepath.Join(dir, "elsewhere")
		writeConfigFile(t, path, "app: shop\ndata_dir: "+data+"\n")
		cfg, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.DataDir != data {
			t.Fatalf("DataDir = %q, want %q", cfg.DataDir, data)
		}
		if want := filepath.Join(data, "admin.token"); cfg.AdminTokenFile != want {
			t.Fatalf("AdminTokenFile = %q, want %q", cfg.AdminTokenFile, want)
		}
	})
	t.Run("process environment", func(t *testing.T) {
		t.Setenv("TEAL_TEST_APP", "envshop")
		path := filepath.Join(t.TempDir(), "teal.yaml")
		writeConfigFile(t, path, "app: ${TEAL_TEST_APP}\n")
		cfg, err := LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.App != "envshop" {
			t.Fatalf("App = %q, want envshop", cfg.App)
		}
	})
	t.Run("errors name the path as given", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "teal.yaml")
		writeConfigFile(t, path, "app: shop\nrun: {instances: 0}\n")
		_, err := LoadConfig(path)
		if want := path + `: run.instances: "0": `; err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("err = %v, want prefix %q", err, want)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want os.ErrNotExist", err)
		}
	})
}

func writeConfigFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"path", "interval", "timeout", "healthy_after", "unhealthy_after", "deadline"}
	tests := []struct {
		name, key, want string
	}{
		{"exact", "path", "path"},
		{"one edit", "pth", "path"},
		{"two edits", "intreval", "interval"},
		{"prefix", "dead", "deadline"},
		{"too short to guess", "p", ""},
		{"nothing close", "colour", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := suggest(tt.key, keys); got != tt.want {
				t.Fatalf("suggest(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestRelated(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"app", "app", true},
		{"run", "run.command", true},
		{"run.command", "run.command[1]", true},
		{"run.command[1]", "run.command", true},
		{"", "health.path", true},
		{"app", "apps", false},
		{"run.env.A", "run.env.AB", false},
		{"health", "release", false},
	}
	for _, tt := range tests {
		t.Run(tt.a+" "+tt.b, func(t *testing.T) {
			if got := related(tt.a, tt.b); got != tt.want {
				t.Fatalf("related(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

// configErrorCase is a config fragment (after app: shop) with the one error it must give: at
// key, its message containing want.
type configErrorCase struct {
	name, src, key, want string
}

// checkOneConfigError runs each case: exactly one error, at its key, saying what it wants.
func checkOneConfigError(t *testing.T, tests []configErrorCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseConfigErrors(t, "app: shop\n"+tt.src+"\n", nil)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			if errs[0].Key != tt.key {
				t.Fatalf("Key = %q, want %q (%v)", errs[0].Key, tt.key, errs[0])
			}
			if msg := errs[0].Error(); !strings.Contains(msg, tt.want) {
				t.Fatalf("error = %q, want it to contain %q", msg, tt.want)
			}
		})
	}
}
