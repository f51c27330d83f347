package haproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"teal.dev/teal"
	"teal.dev/teal/internal/testutil"
)

// instance is a running HAProxy started for one test.
type instance struct {
	Socket   string // the admin unix socket
	TCP      string // ipv4@127.0.0.1:port, an admin socket over TCP
	Operator string // a unix socket at level operator
	Frontend string // http://127.0.0.1:port
	Dir      string
	Pid      int // the haproxy process started (the master with MasterWorker)
}

// haConfig says what goes into the test's haproxy.cfg.
type haConfig struct {
	Slots   int    // server-template blue|green 1-Slots; 0 means 2
	Backend string // the backend's name; "" means shop
	Balance string // "" means roundrobin
	Server  string // options after each slot, like "check inter 100ms"; "" means none
	Extra   string // lines added to the backend
	// MasterWorker runs haproxy -W: a master process whose SIGUSR2 reloads haproxy.cfg
	// into a new worker, as systemctl reload haproxy does.
	MasterWorker bool
}

// startHAProxy starts Debian's haproxy in the foreground (-db) with a generated haproxy.cfg in
// a temporary directory, and waits until its admin socket answers.
func startHAProxy(t *testing.T, hc haConfig) *instance {
	t.Helper()
	path, err := exec.LookPath("haproxy")
	if err != nil {
		// Debian installs it in /usr/sbin, which is not on every user's PATH.
		path, err = exec.LookPath("/usr/sbin/haproxy")
	}
	if err != nil {
		t.Fatalf("haproxy is not installed (Debian haproxy; scripts/deps.sh test installs it): %v", err)
	}
	if hc.Slots == 0 {
		hc.Slots = 2
	}
	if hc.Backend == "" {
		hc.Backend = "shop"
	}
	if hc.Balance == "" {
		hc.Balance = "roundrobin"
	}
	dir := t.TempDir()
	in := &instance{
		Socket:   filepath.Join(dir, "admin.sock"),
		TCP:      "ipv4@" + testutil.FreeAddr(t),
		Operator: filepath.Join(dir, "operator.sock"),
		Frontend: "http://" + testutil.FreeAddr(t),
		Dir:      dir,
	}
	cfg := fmt.Sprintf(`global
    stats socket %[1]s mode 600 level admin
    stats socket %[2]s level admin
    stats socket %[3]s mode 600 level operator
    stats timeout 1m
    maxconn 1000
    nbthread 2

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 2

frontend fe
    bind %[4]s
    default_backend %[5]s

backend %[5]s
    balance %[6]s
    server-template blue 1-%[7]d 127.0.0.1:1 disabled %[8]s
    server-template green 1-%[7]d 127.0.0.1:1 disabled %[8]s
%[9]s
`, in.Socket, in.TCP, in.Operator, strings.TrimPrefix(in.Frontend, "http://"), hc.Backend, hc.Balance, hc.Slots, hc.Server, hc.Extra)
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatalf("write haproxy.cfg: %v", err)
	}
	args := []string{"-f", cfgPath, "-db"}
	if hc.MasterWorker {
		args = append(args, "-W")
	}
	cmd := exec.Command(path, args...)
	proc := testutil.StartProcess(t, "haproxy", cmd, func() string { return "haproxy.cfg:\n" + cfg })
	in.Pid = cmd.Process.Pid
	log, exited := proc.Log, proc.Exited

	c := &Client{Socket: in.Socket, Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ans, err := c.Do(context.Background(), "show info")
		if err == nil && strings.Contains(ans, "Name: HAProxy") {
			return in
		}
		select {
		case err := <-exited:
			t.Fatalf("haproxy exited before its socket answered: %v\n%s", err, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy's socket %s did not answer within 20s (last error %v)\n%s", in.Socket, err, log.String())
		}
	}
}

// router returns an opened Router on in's backend shop.
func (in *instance) router(t *testing.T) *Router {
	t.Helper()
	r := NewRouter(in.Socket, "shop")
	r.Poll = 10 * time.Millisecond
	if err := r.Open(context.Background()); err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

// servers reads the backend back by name.
func servers(t *testing.T, r *Router) map[string]ServerState {
	t.Helper()
	states, err := r.Servers(context.Background())
	if err != nil {
		t.Fatalf("Servers: %v", err)
	}
	out := map[string]ServerState{}
	for _, s := range states {
		out[s.Name] = s
	}
	return out
}

// backend is an HTTP server that answers its name ("blue-1") to every request.
func backend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

// backends starts n backends of colour c and returns their addresses.
func backends(t *testing.T, c teal.Color, n int) []string {
	t.Helper()
	var addrs []string
	for i := range n {
		addrs = append(addrs, strings.TrimPrefix(backend(t, fmt.Sprintf("%s-%d", c, i+1)).URL, "http://"))
	}
	return addrs
}

// get sends one request through HAProxy and returns the status and body.
func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// colorOf returns the colour of a backend's answer ("green-2" is green).
func colorOf(body string) teal.Color {
	c, _, _ := strings.Cut(body, "-")
	return teal.Color(c)
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
