package testutil

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// StartRedis starts a throwaway redis-server (no password, nothing kept on disk) on a free
// loopback port and returns its address and a func that stops it. With TEAL_TEST_REDIS_ADDR
// set it starts nothing and returns that address: tests then share that server, and must use
// keys of their own. It is meant for TestMain; tests use Redis.
func StartRedis() (addr string, stop func(), err error) {
	if a := os.Getenv("TEAL_TEST_REDIS_ADDR"); a != "" {
		return a, func() {}, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("redis-server is not installed (make test installs it: apt-get install redis-server), or set TEAL_TEST_REDIS_ADDR: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "teal-redis-")
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--logfile", dir+"/redis.log")
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-exited
		os.RemoveAll(dir)
	}
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pong(addr) {
			return addr, stop, nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(dir + "/redis.log")
			stop()
			return "", nil, fmt.Errorf("redis-server exited at start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s did not answer PING within 10s", addr)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

// Redis starts a throwaway redis-server for the test (see StartRedis) and returns its address.
func Redis(t testing.TB) string {
	t.Helper()
	addr, stop, err := StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}

// pong reports whether a Redis server answers PING at addr.
func pong(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}

// RedisPrefix checks that a Redis client on the test server answers, failing the test
// otherwise, and returns a key prefix of the test's own whose keys are deleted when it ends.
func RedisPrefix(t testing.TB, rdb *redis.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("the test Redis server at %s does not answer: %v", rdb.Options().Addr, err)
	}
	prefix := "teal-test:" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, err := rdb.Keys(ctx, prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			_ = rdb.Del(ctx, keys...).Err()
		}
	})
	return prefix
}
