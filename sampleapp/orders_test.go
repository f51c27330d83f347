package sampleapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"teal.dev/teal/internal/testutil"
)

// call sends a request to srv and returns the status and body.
func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestApp_OrdersWithoutDatabase(t *testing.T) {
	srv := httptest.NewServer(&App{Version: "v1"})
	t.Cleanup(srv.Close)
	tests := []struct {
		method, path string
	}{
		{"POST", "/orders"},
		{"PUT", "/orders/1"},
		{"GET", "/orders/1"},
		{"GET", "/orders/count"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			status, body := call(t, srv, tt.method, tt.path, "note")
			if status != http.StatusServiceUnavailable || !strings.Contains(body, "no database") {
				t.Fatalf("%s %s = %d %q, want 503 no database", tt.method, tt.path, status, body)
			}
		})
	}
	if status, _ := call(t, srv, "GET", "/healthz", ""); status != http.StatusOK {
		t.Fatalf("GET /healthz = %d, want 200 without a database", status)
	}
}

// ordersDB creates database name on c with the orders table (migration 0001's Up section,
// run with psql) and returns a pool on it whose connections carry the application name name,
// so a test can find and terminate them.
func ordersDB(t *testing.T, c *testutil.Cluster, name string) *pgxpool.Pool {
	t.Helper()
	c.Psql(t, "postgres", "CREATE DATABASE "+name)
	c.Psql(t, name, upSection(t, "v1", "0001_create_orders.sql"))
	cfg, err := pgxpool.ParseConfig(c.DSN(name) + "&application_name=" + name)
	if err != nil {
		t.Fatal(err)
	}
	// The pool's own liveness check would hide dead connections from the handlers after a
	// second of idleness; the tests want the handlers to meet them.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// upSection returns the SQL of a migration's goose Up section, which psql can run.
func upSection(t *testing.T, version, name string) string {
	t.Helper()
	b, err := fs.ReadFile(Migrations(version), name)
	if err != nil {
		t.Fatal(err)
	}
	_, up, ok := strings.Cut(string(b), "-- +goose Up")
	if !ok {
		t.Fatalf("%s has no -- +goose Up", name)
	}
	up, _, _ = strings.Cut(up, "-- +goose Down")
	return up
}

// TestApp_Database runs the /orders routes against one real cluster, a database per subtest.
func TestApp_Database(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{})
	t.Run("orders", func(t *testing.T) { testOrders(t, c) })
	t.Run("terminated sessions", func(t *testing.T) { testTerminatedSessions(t, c) })
	t.Run("Run", func(t *testing.T) { testRunDatabase(t, c) })
}

func testOrders(t *testing.T, c *testutil.Cluster) {
	const db = "orders"
	pool := ordersDB(t, c, db)
	srv := httptest.NewServer(&App{Version: "v2", DB: pool})
	t.Cleanup(srv.Close)
	t.Run("routes", func(t *testing.T) {
		steps := []struct {
			name         string
			method, path string
			body         string
			wantStatus   int
			wantBody     string // JSON, compared after decoding; or a substring for errors
		}{
			{"insert without a note", "POST", "/orders", "", 201, `{"id":1,"version":"v2"}`},
			{"insert with a note", "POST", "/orders", "two apples", 201, `{"id":2,"version":"v2"}`},
			{"read", "GET", "/orders/2", "", 200, `{"id":2,"note":"two apples","version":"v2"}`},
			{"read no note", "GET", "/orders/1", "", 200, `{"id":1,"note":null,"version":"v2"}`},
			{"update", "PUT", "/orders/2", "three apples", 200, `{"id":2,"note":"three apples","version":"v2"}`},
			{"read updated", "GET", "/orders/2", "", 200, `{"id":2,"note":"three apples","version":"v2"}`},
			{"count", "GET", "/orders/count", "", 200, `{"count":2}`},
			{"update missing", "PUT", "/orders/99", "x", 404, "no order 99"},
			{"read missing", "GET", "/orders/99", "", 404, "no order 99"},
			{"bad id", "GET", "/orders/abc", "", 400, "want a positive whole number"},
			{"zero id", "PUT", "/orders/0", "", 400, "want a positive whole number"},
			{"nested path", "GET", "/orders/1/x", "", 404, "not found"},
			{"list not served", "GET", "/orders", "", 405, "method not allowed"},
			{"delete not served", "DELETE", "/orders/1", "", 405, "method not allowed"},
			{"note too big", "POST", "/orders", strings.Repeat("x", MaxNoteBytes+1), 413, "note over"},
			{"count unchanged", "GET", "/orders/count", "", 200, `{"count":2}`},
		}
		for _, s := range steps {
			status, body := call(t, srv, s.method, s.path, s.body)
			if status != s.wantStatus {
				t.Fatalf("%s: %s %s = %d %q, want %d", s.name, s.method, s.path, status, body, s.wantStatus)
			}
			if !strings.HasPrefix(s.wantBody, "{") {
				if !strings.Contains(body, s.wantBody) {
					t.Fatalf("%s: body = %q, want it to contain %q", s.name, body, s.wantBody)
				}
				continue
			}
			var got, want map[string]any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%s: body %q: %v", s.name, body, err)
			}
			if err := json.Unmarshal([]byte(s.wantBody), &want); err != nil {
				t.Fatal(err)
			}
			if created, ok := got["created_at"].(string); ok {
				if _, err := time.Parse(time.RFC3339Nano, created); err != nil {
					t.Fatalf("%s: created_at %q: %v", s.name, created, err)
				}
				delete(got, "created_at")
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: body = %v, want %v", s.name, got, want)
			}
		}
	})

	t.Run("after migration 0002", func(t *testing.T) {
		c.Psql(t, db, upSection(t, "v2", "0002_add_orders_total.sql"))
		if status, body := call(t, srv, "POST", "/orders", "with a total column"); status != 201 {
			t.Fatalf("POST /orders = %d %q, want 201", status, body)
		}
		if got := c.Psql(t, db, "SELECT count(*) FROM orders WHERE total_cents IS NULL"); got != "3" {
			t.Fatalf("orders = %s, want 3", got)
		}
	})

	t.Run("writes refused", func(t *testing.T) {
		// A frozen colour's role loses its grants: the write fails, visibly, and is not
		// retried as if the connection were lost.
		c.Psql(t, db, "CREATE ROLE frozen LOGIN; GRANT SELECT ON orders TO frozen")
		cfg, err := pgxpool.ParseConfig(c.DSN(db))
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.User = "frozen"
		frozen, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(frozen.Close)
		fsrv := httptest.NewServer(&App{Version: "v2", DB: frozen})
		t.Cleanup(fsrv.Close)
		status, body := call(t, fsrv, "POST", "/orders", "x")
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "permission denied") {
			t.Fatalf("POST /orders as a role without INSERT = %d %q, want 503 permission denied", status, body)
		}
		if status, body := call(t, fsrv, "GET", "/orders/count", ""); status != 200 || !strings.Contains(body, `"count":3`) {
			t.Fatalf("GET /orders/count as a read-only role = %d %q, want 200 and 3", status, body)
		}
	})
}

func testTerminatedSessions(t *testing.T, c *testutil.Cluster) {
	const appName = "terminated"
	pool := ordersDB(t, c, appName)
	srv := httptest.NewServer(&App{Version: "v1", DB: pool})
	t.Cleanup(srv.Close)

	// terminate ends every session of the app, as a switchover's freeze does, and waits
	// until they are gone.
	terminate := func() {
		t.Helper()
		c.Psql(t, appName, fmt.Sprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '%s'", appName))
		waitFor(t, 10*time.Second, func() bool {
			return c.Psql(t, appName, fmt.Sprintf("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'", appName)) == "0"
		})
	}
	steps := []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/orders", "first", 201},
		{"PUT", "/orders/1", "first, updated", 200},
		{"GET", "/orders/1", "", 200},
		{"GET", "/orders/count", "", 200},
		{"POST", "/orders", "second", 201},
	}
	for _, s := range steps {
		terminate()
		if status, body := call(t, srv, s.method, s.path, s.body); status != s.want {
			t.Fatalf("%s %s after its session was terminated = %d %q, want %d", s.method, s.path, status, body, s.want)
		}
	}
	if got := c.Psql(t, appName, "SELECT string_agg(id || ':' || note, ',' ORDER BY id) FROM orders"); got != "1:first, updated,2:second" {
		t.Fatalf("orders = %q, want each write exactly once", got)
	}

	// The error a statement meets on a terminated session is one ConnectionLost knows.
	if _, err := pool.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	terminate()
	_, err := pool.Exec(context.Background(), "SELECT 1")
	if err == nil || !ConnectionLost(err) {
		t.Fatalf("statement on a terminated session: err = %v, ConnectionLost = false; want true", err)
	}
}

func TestConnectionLost(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"terminated", &pgconn.PgError{Code: "57P01"}, true},
		{"wrapped terminated", fmt.Errorf("insert: %w", &pgconn.PgError{Code: "57P01"}), true},
		{"crash", &pgconn.PgError{Code: "57P02"}, true},
		{"idle timeout", &pgconn.PgError{Code: "57P05"}, true},
		{"permission denied", &pgconn.PgError{Code: "42501"}, false},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"eof", io.ErrUnexpectedEOF, true},
		{"closed", pgconn.ErrConnClosed, true},
		{"canceled", context.Canceled, false},
		{"other", errors.New("boom"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ConnectionLost(tt.err); got != tt.want {
				t.Fatalf("ConnectionLost(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func testRunDatabase(t *testing.T, c *testutil.Cluster) {
	ordersDB(t, c, "run")
	t.Setenv("DATABASE_URL", c.DSN("run"))
	addr := testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- Run(ctx, addr, "v3") }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	var body []byte
	waitFor(t, 5*time.Second, func() bool {
		resp, err := http.Post("http://"+addr+"/orders", "text/plain", strings.NewReader("from Run"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusCreated
	})
	if want := `{"id":1,"version":"v3"}`; strings.TrimSpace(string(body)) != want {
		t.Fatalf("POST /orders = %s, want %s", body, want)
	}
}

func TestRun_DatabaseURLInvalid(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://shop:hunter2@db:99999/shop")
	err := Run(context.Background(), testutil.FreeAddr(t), "v1")
	if err == nil || !strings.Contains(err.Error(), "sampleapp database") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Run with a bad DATABASE_URL = %v, want a database error without the password", err)
	}
}
