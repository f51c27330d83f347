package sessions

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"teal.dev/teal/internal/testutil"
)

// testRedisAddr is the Redis server the tests use: TEAL_TEST_REDIS_ADDR, else the one on the
// default port. The tests use database testDB, not 0, and keys with a prefix of their own.
func testRedisAddr() string { return redisAddr }

// redisAddr is the throwaway Redis server TestMain started (testutil.StartRedis).
var redisAddr string

const testDB = 9

// testRedis returns a client on the test server, failing the test if there is none, and a
// key prefix unique to the test.
func testRedis(t *testing.T) (*redis.Client, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testRedisAddr(), DB: testDB})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, testutil.RedisPrefix(t, rdb)
}

func testURL() string {
	return fmt.Sprintf("redis://%s/%d", testRedisAddr(), testDB)
}

func TestChecker_Check(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	c := &Checker{URL: testURL()}
	key := prefix + "probe"
	start := time.Now()
	rep, err := c.Check(ctx, key)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Check = %v, want no error", err)
	}
	if rep.Addr != testRedisAddr() {
		t.Fatalf("Addr = %q, want %q", rep.Addr, testRedisAddr())
	}
	if rep.RTT <= 0 || rep.RTT > time.Second {
		t.Fatalf("RTT = %s, want between 0 and 1s on loopback", rep.RTT)
	}
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := infoField(info, "redis_version"); rep.Version != want || want == "" {
		t.Fatalf("Version = %q, want %q", rep.Version, want)
	}
	if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS %s after Check = %d, %v; want 0: the probe key is deleted", key, n, err)
	}
	t.Logf("redis %s at %s: PING round trip %s, whole check %s", rep.Version, rep.Addr, rep.RTT, took)
}

func TestChecker_Probe(t *testing.T) {
	rdb, _ := testRedis(t)
	ctx := context.Background()
	c := &Checker{URL: testURL(), Timeout: 2 * time.Second}
	if err := c.Probe(ctx); err != nil {
		t.Fatalf("Probe = %v, want nil", err)
	}
	if err := (Store{Checker: c}).Check(ctx); err != nil {
		t.Fatalf("Store.Check = %v, want nil", err)
	}
	var e *Error
	if err := (Store{Checker: &Checker{URL: "redis://" + testutil.DeadAddr(t)}}).Check(ctx); !errors.As(err, &e) || e.Hint == "" {
		t.Fatalf("Store.Check of a dead address = %v, want an *Error with a hint", err)
	}
	// Probe's keys are random, so look for any left behind under its prefix in the test
	// database (no other test writes there under it).
	keys, err := rdb.Keys(ctx, ProbeKeyPrefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("keys left after Probe: %q, want none", keys)
	}
}

// TestChecker_UnixSocket checks through a unix socket that forwards to the test server.
func TestChecker_UnixSocket(t *testing.T) {
	testRedis(t)
	// A unix socket path is limited to ~108 bytes; t.TempDir's can be longer.
	dir, err := os.MkdirTemp("", "sess")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "redis.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, func(c net.Conn) {
		up, err := net.Dial("tcp", testRedisAddr())
		if err != nil {
			return
		}
		defer up.Close()
		go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
		_, _ = io.Copy(c, up)
	})
	c := &Checker{URL: "unix://" + sock + "?db=" + strconv.Itoa(testDB)}
	rep, err := c.Check(context.Background(), "teal-test:"+rand.Text()+":probe")
	if err != nil {
		t.Fatalf("Check over %s = %v, want no error", sock, err)
	}
	if rep.Addr != sock {
		t.Fatalf("Addr = %q, want %q", rep.Addr, sock)
	}
}

// serve accepts connections on ln until the test ends, each handled by handle.
func serve(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// fakeRedis serves the Redis protocol on loopback with canned replies: replies[cmd] (raw
// RESP) for a command in it, "-ERR unknown command" for HELLO (so go-redis falls back to
// RESP2), and the usual answers otherwise. It stands for a server state the shared test
// server cannot be put in (a replica, out of memory, an ACL without DEL).
func fakeRedis(t *testing.T, replies map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	lastSet := "" // the value of the last SET, which GET answers
	serve(t, ln, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			args, err := readCommand(r)
			if err != nil {
				return
			}
			cmd := strings.ToUpper(args[0])
			mu.Lock()
			reply, ok := replies[cmd]
			switch {
			case ok:
			case cmd == "HELLO":
				reply = "-ERR unknown command 'HELLO'\r\n"
			case cmd == "PING":
				reply = "+PONG\r\n"
			case cmd == "INFO":
				s := "# Server\r\nredis_version:6.2.99\r\n"
				reply = fmt.Sprintf("$%d\r\n%s\r\n", len(s), s)
			case cmd == "GET" && len(args) > 1:
				reply = fmt.Sprintf("$%d\r\n%s\r\n", len(lastSet), lastSet)
			case cmd == "SET" && len(args) > 2:
				lastSet = args[2]
				reply = "+OK\r\n"
			case cmd == "DEL":
				reply = ":1\r\n"
			default:
				reply = "+OK\r\n"
			}
			mu.Unlock()
			if _, err := io.WriteString(c, reply); err != nil {
				return
			}
		}
	})
	return ln.Addr().String()
}

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
	if err != nil || n < 1 {
		return nil, fmt.Errorf("bad command header %q", line)
	}
	args := make([]string, n)
	for i := range args {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
		if err != nil {
			return nil, fmt.Errorf("bad bulk header %q", line)
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		args[i] = string(b[:size])
	}
	return args, nil
}

func TestChecker_Errors(t *testing.T) {
	testRedis(t)
	dead := testutil.DeadAddr(t)

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, silent, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })

	tlsSrv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(tlsSrv.Close)

	// A plain-text server that speaks first, as some proxies do: a TLS client reads its
	// answer as a record header.
	chatty, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, chatty, func(c net.Conn) {
		_, _ = io.WriteString(c, "-ERR Protocol error\r\n")
		_, _ = io.Copy(io.Discard, c)
	})

	const secret = "hunter2-secret"
	tests := []struct {
		name    string
		url     string
		timeout time.Duration
		op      string
		want    string // in the message
		hint    string // in the hint
	}{
		{"wrong port", "redis://" + dead, 0, "connect", "session store redis " + dead + ": connection refused", "is Redis running and listening on " + dead},
		{"wrong password", "redis://tealtest:" + secret + "@" + testRedisAddr() + "/9", 0, "AUTH", "AUTH failed: WRONGPASS", "check the user and password"},
		{"database out of range", "redis://" + testRedisAddr() + "/99", 0, "connect", "database 99 does not exist", "databases 0 to 15"},
		{"TLS to a plain-text Redis", "rediss://" + testRedisAddr(), 500 * time.Millisecond, "connect", "TLS handshake: no answer within 500ms", "redis:// for one that does not"},
		{"TLS to a plain-text server that answers", "rediss://" + chatty.Addr().String(), 0, "connect", "TLS handshake: the server does not speak TLS", "redis:// for one that does not"},
		{"TLS certificate of an unknown CA", "rediss://" + tlsSrv.Listener.Addr().String(), 0, "connect", "TLS certificate not trusted", "signed by a CA this machine trusts"},
		{"plain text to a TLS server", "redis://" + tlsSrv.Listener.Addr().String(), 2 * time.Second, "connect", "connect: ", "use rediss:// only for a server that speaks TLS"},
		{"server that never answers", "redis://" + silent.Addr().String(), 300 * time.Millisecond, "connect", "connect: no answer within 300ms", "is it a Redis server?"},
		{"no unix socket", "unix:///nonexistent/redis.sock", 0, "connect", "no socket at /nonexistent/redis.sock", "unixsocket"},
		{"bad URL", "http://tealtest:" + secret + "@h", 0, "parse", `session store: redis URL "http://tealtest:xxxxx@h": scheme "http"`, "sessions.redis"},
		{"replica", "redis://" + fakeRedis(t, map[string]string{"SET": "-READONLY You can't write against a read only replica.\r\n"}), 0,
			"SET", "READONLY replica: sessions cannot be written", "primary"},
		{"out of memory", "redis://" + fakeRedis(t, map[string]string{"SET": "-OOM command not allowed when used memory > 'maxmemory'.\r\n"}), 0,
			"SET", "out of memory: sessions cannot be written", "maxmemory"},
		{"no DEL in the ACL", "redis://" + fakeRedis(t, map[string]string{"DEL": "-NOPERM this user has no permissions to run the 'del' command\r\n"}), 0,
			"DEL", "DEL: permission denied: NOPERM", "PING, INFO, SET, GET and DEL"},
		{"loading", "redis://" + fakeRedis(t, map[string]string{"PING": "-LOADING Redis is loading the dataset in memory\r\n"}), 0,
			"connect", "Redis is loading its data set", "try again"},
		{"password wanted", "redis://" + fakeRedis(t, map[string]string{"PING": "-NOAUTH Authentication required.\r\n"}), 0,
			"AUTH", "AUTH failed: NOAUTH", "the server wants a password"},
		{"read back something else", "redis://" + fakeRedis(t, map[string]string{"GET": "$5\r\nother\r\n"}), 0,
			"GET", `read back "other"`, "another client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Checker{URL: tt.url, Timeout: tt.timeout}
			start := time.Now()
			_, err := c.Check(context.Background(), "teal-test:"+rand.Text()+":probe")
			took := time.Since(start)
			if err == nil {
				t.Fatalf("Check(%s) = no error, want %q", Redact(tt.url), tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Check(%s) = %T %v, want *Error", Redact(tt.url), err, err)
			}
			t.Logf("%v (op %s; hint: %s; in %s)", err, e.Op, e.Hint, took.Round(time.Millisecond))
			if e.Op != tt.op {
				t.Fatalf("Op = %q, want %q", e.Op, tt.op)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check(%s) = %q, want it to contain %q", Redact(tt.url), err, tt.want)
			}
			if !strings.Contains(e.Hint, tt.hint) {
				t.Fatalf("hint = %q, want it to contain %q", e.Hint, tt.hint)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(e.Hint, secret) {
				t.Fatalf("Check(%s) = %q: shows the password", Redact(tt.url), err)
			}
			if took > 3*time.Second {
				t.Fatalf("Check took %s, want the failure reported at once", took)
			}
		})
	}
}

func TestChecker_Cancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := &Checker{URL: testURL()}
	_, err := c.Check(ctx, "teal-test:"+rand.Text()+":probe")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Check with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestChecker_EmptyProbeKey(t *testing.T) {
	c := &Checker{URL: testURL()}
	if _, err := c.Check(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "probe key is empty") {
		t.Fatalf("Check with an empty key = %v, want an error saying so", err)
	}
}
