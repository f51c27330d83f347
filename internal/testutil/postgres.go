// Package testutil starts the real things tests need: throwaway PostgreSQL clusters on free
// ports. Nothing here touches a server the machine already runs.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Cluster is a throwaway PostgreSQL cluster: initdb into a temporary directory, started with
// pg_ctl on a free loopback port, trust authentication, wal_level=logical, stopped and removed
// when the test ends.
type Cluster struct {
	Port int
	Dir  string // data directory
	Bin  string // the server's bin directory (initdb, pg_ctl, pg_dump …)
	// Superuser is the cluster's bootstrap superuser.
	Superuser string

	runAs *user.User // non-nil when running as root: initdb refuses root
}

// ClusterOptions tune a cluster; the zero value is a good default.
type ClusterOptions struct {
	// Settings are extra `-c name=value` server settings.
	Settings map[string]string
}

// PGBin returns the bin directory of the newest PostgreSQL installed under
// /usr/lib/postgresql, or fails the test with how to install one.
func PGBin(t testing.TB) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	t.Fatalf("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: apt-get install postgresql (make test does)")
	return ""
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// StartCluster starts a new cluster for t.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	c := &Cluster{Bin: PGBin(t), Superuser: "postgres"}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, initdb needs the postgres user: %v", err)
		}
		c.runAs = u
	} else if u, err := user.Current(); err == nil {
		c.Superuser = u.Username
	}
	dir, err := os.MkdirTemp("", "teal-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c.Dir = filepath.Join(dir, "data")
	sock := filepath.Join(dir, "sock")
	if err := os.MkdirAll(sock, 0o755); err != nil {
		t.Fatal(err)
	}
	if c.runAs != nil {
		uid, _ := strconv.Atoi(c.runAs.Uid)
		gid, _ := strconv.Atoi(c.runAs.Gid)
		for _, p := range []string{dir, sock} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	if out, err := c.run("initdb", "-D", c.Dir, "-U", c.Superuser, "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}

	settings := map[string]string{
		"listen_addresses":                "127.0.0.1",
		"unix_socket_directories":         sock,
		"wal_level":                       "logical",
		"max_replication_slots":           "20",
		"max_wal_senders":                 "20",
		"max_logical_replication_workers": "8",
		"max_worker_processes":            "16",
		"fsync":                           "off", // a throwaway cluster: speed over durability
		"synchronous_commit":              "off",
		"full_page_writes":                "off",
		"shared_buffers":                  "32MB",
		"max_connections":                 "60",
	}
	for k, v := range o.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	// A free port can be taken between choosing it and the server binding it: try a few.
	for attempt := 0; ; attempt++ {
		c.Port = freePort(t)
		var opts []string
		opts = append(opts, "-p", strconv.Itoa(c.Port))
		for _, k := range keys {
			opts = append(opts, "-c", k+"="+settings[k])
		}
		out, err := c.run("pg_ctl", "-D", c.Dir, "-w", "-t", "60", "-l", filepath.Join(dir, "server.log"), "-o", shellJoin(opts), "start")
		if err == nil {
			break
		}
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		if attempt < 3 && bytes.Contains(log, []byte("could not bind")) {
			continue
		}
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		if out, err := c.run("pg_ctl", "-D", c.Dir, "-m", "immediate", "-w", "stop"); err != nil {
			t.Logf("pg_ctl stop: %v\n%s", err, out)
		}
	})
	return c
}

// DSN returns a connection string for database db as the superuser.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", c.Superuser, c.Port, db)
}

// Psql runs SQL with psql against db and returns its output; it fails the test on error.
func (c *Cluster) Psql(t testing.TB, db, sql string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.Bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", c.DSN(db), "-c", sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Log returns the server log, for test failure messages.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(c.Dir), "server.log"))
	return string(b)
}

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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

var portMu sync.Mutex

func freePort(t testing.TB) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// shellJoin quotes args for pg_ctl -o, which passes them through a shell.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
