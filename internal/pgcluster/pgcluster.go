// Package pgcluster starts and stops throwaway PostgreSQL clusters from the server binaries
// installed on this machine: initdb into a directory, pg_ctl on a free loopback port, trust
// authentication, wal_level=logical. Tests use it through internal/testutil; `teal demo` uses
// it directly.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"teal.dev/teal/internal/freeport"
)

// Cluster is one running throwaway cluster.
type Cluster struct {
	Port      int
	Dir       string // its directory: data/, sock/, server.log
	Bin       string // the server's bin directory
	Superuser string

	runAs *user.User // non-nil when running as root: initdb refuses root
}

// Options tune a cluster; the zero value is a good default.
type Options struct {
	// Settings are extra `-c name=value` server settings.
	Settings map[string]string
}

// ErrNoServer means no PostgreSQL server binaries are installed.
var ErrNoServer = errors.New("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)")

// Bin returns the bin directory of the newest PostgreSQL installed under /usr/lib/postgresql.
func Bin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNoServer
}

func major(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start creates a cluster in dir (which must not exist or be empty) and starts it.
func Start(ctx context.Context, dir string, o Options) (*Cluster, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Bin: bin, Dir: dir, Superuser: "postgres"}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, initdb needs the postgres user: %w", err)
		}
		c.runAs = u
	} else if u, err := user.Current(); err == nil {
		c.Superuser = u.Username
	}
	sock := filepath.Join(dir, "sock")
	if err := os.MkdirAll(sock, 0o755); err != nil {
		return nil, err
	}
	if c.runAs != nil {
		uid, _ := strconv.Atoi(c.runAs.Uid)
		gid, _ := strconv.Atoi(c.runAs.Gid)
		for _, p := range []string{dir, sock} {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run(ctx, "initdb", "-D", data, "-U", c.Superuser, "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	settings := map[string]string{
		"listen_addresses":                "127.0.0.1",
		"unix_socket_directories":         sock,
		"wal_level":                       "logical",
		"max_replication_slots":           "20",
		"max_wal_senders":                 "20",
		"max_logical_replication_workers": "8",
		"max_worker_processes":            "16",
		"fsync":                           "off", // throwaway: speed over durability
		"synchronous_commit":              "off",
		"full_page_writes":                "off",
		"shared_buffers":                  "32MB",
		"max_connections":                 "60",
		// Apply and table-sync workers start within this (5 s by default): a throwaway
		// cluster favours quick starts.
		"wal_retrieve_retry_interval": "100ms",
	}
	for k, v := range o.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	logPath := filepath.Join(dir, "server.log")
	// A free port can be taken between choosing it and the server binding it: try again.
	for attempt := 0; ; attempt++ {
		ports, err := freeport.Ports(1)
		if err != nil {
			return nil, err
		}
		c.Port = ports[0]
		opts := []string{"-p", strconv.Itoa(c.Port)}
		for _, k := range keys {
			opts = append(opts, "-c", k+"="+settings[k])
		}
		out, err := c.run(ctx, "pg_ctl", "-D", data, "-w", "-t", "60", "-l", logPath, "-o", shellJoin(opts), "start")
		if err == nil {
			return c, nil
		}
		log, _ := os.ReadFile(logPath)
		if attempt < 3 && bytes.Contains(log, []byte("could not bind")) {
			continue
		}
		return nil, fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
	}
}

// Stop stops the cluster at once (its data is throwaway).
func (c *Cluster) Stop(ctx context.Context) error {
	if out, err := c.run(ctx, "pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// DSN returns a connection string for database db as the superuser.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", c.Superuser, c.Port, db)
}

// Psql runs SQL with psql against db and returns its output.
func (c *Cluster) Psql(ctx context.Context, db, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", c.DSN(db), "-c", sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql %q: %w\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// Log returns the server log.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
	return string(b)
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	bin := filepath.Join(c.Bin, name)
	var cmd *exec.Cmd
	if c.runAs != nil {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.runAs.Username, "--", bin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}

// shellJoin quotes args for pg_ctl -o, which passes them through a shell.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
