package handoff

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"teal.dev/teal/internal/testutil"
)

// donor is a hand-written Donor whose steps are function fields, recording each call.
type donor struct {
	sockets func() ([]Socket, error)
	stop    func(context.Context) error
	resume  func(context.Context) error

	mu    sync.Mutex
	calls []string
}

func (d *donor) record(s string) {
	d.mu.Lock()
	d.calls = append(d.calls, s)
	d.mu.Unlock()
}

func (d *donor) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

func (d *donor) Sockets() ([]Socket, error) {
	d.record("sockets")
	if d.sockets == nil {
		return nil, nil
	}
	return d.sockets()
}

func (d *donor) Stop(ctx context.Context) error {
	d.record("stop")
	if d.stop == nil {
		return nil
	}
	return d.stop(ctx)
}

func (d *donor) Resume(ctx context.Context) error {
	d.record("resume")
	if d.resume == nil {
		return nil
	}
	return d.resume(ctx)
}

// socketPath returns a control socket path in a fresh directory (short enough for a Unix
// socket address).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "handoff")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, SocketName)
}

type served struct {
	pid int
	err error
}

// serve runs srv.Serve with d in the background; the result arrives on the channel.
func serve(t *testing.T, srv *Server, d Donor) <-chan served {
	t.Helper()
	ch := make(chan served, 1)
	go func() {
		pid, err := srv.Serve(context.Background(), d)
		ch <- served{pid, err}
	}()
	t.Cleanup(func() { srv.Close() })
	return ch
}

func listen(t *testing.T) *Server {
	t.Helper()
	srv, err := Listen(socketPath(t))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	return srv
}

func tcpListener(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

func dialTakeover(t *testing.T, path string) *Takeover {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tk, err := Dial(ctx, path)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { tk.Close() })
	return tk
}

func ctx10s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// acceptOne dials addr and returns what ln accepted, failing the test after a while.
func acceptOne(t *testing.T, ln net.Listener, addr string) {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		got <- err
	}()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("accept on the passed listener: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the passed listener accepted nothing within 10s")
	}
}

func TestTakeover_PassesSocketsThatAccept(t *testing.T) {
	srv := listen(t)
	live, admin := tcpListener(t), tcpListener(t)
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	d := &donor{sockets: func() ([]Socket, error) {
		return []Socket{{"live", live}, {"admin", admin}, {"dns-udp", udp.(*net.UDPConn)}}, nil
	}}
	done := serve(t, srv, d)

	tk := dialTakeover(t, srv.Path())
	if tk.PID != os.Getpid() {
		t.Fatalf("hello pid = %d, want %d", tk.PID, os.Getpid())
	}
	socks, err := tk.Sockets(ctx10s(t))
	if err != nil {
		t.Fatalf("Sockets: %v", err)
	}
	defer socks.Close()
	if got, want := socks.Names(), []string{"live", "admin", "dns-udp", ControlName}; !slices.Equal(got, want) {
		t.Fatalf("names = %v, want %v", got, want)
	}

	ln, err := socks.Listener("live")
	if err != nil || ln == nil {
		t.Fatalf("Listener(live) = %v, %v", ln, err)
	}
	defer ln.Close()
	if got, want := ln.Addr().String(), live.Addr().String(); got != want {
		t.Fatalf("passed live listener at %s, want %s", got, want)
	}
	// Both copies accept from the one socket; with the original closed, the copy gets all.
	live.Close()
	acceptOne(t, ln, ln.Addr().String())

	pc, err := socks.PacketConn("dns-udp")
	if err != nil || pc == nil {
		t.Fatalf("PacketConn(dns-udp) = %v, %v", pc, err)
	}
	defer pc.Close()
	udp.Close()
	cl, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 8)
	if n, _, err := pc.ReadFrom(buf); err != nil || string(buf[:n]) != "q" {
		t.Fatalf("passed UDP socket read %q, %v; want \"q\"", buf[:n], err)
	}

	if ln, err := socks.Listener("nope"); ln != nil || err != nil {
		t.Fatalf("Listener(nope) = %v, %v; want nil, nil", ln, err)
	}
	if _, err := socks.Listener("dns-udp"); err != nil {
		t.Fatalf("a socket taken twice: %v", err)
	}

	if err := tk.Stop(ctx10s(t)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := tk.Taken(); err != nil {
		t.Fatalf("Taken: %v", err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.pid != os.Getpid() {
			t.Fatalf("Serve = %d, %v; want %d, nil", r.pid, r.err, os.Getpid())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after taken")
	}
	if got, want := d.Calls(), []string{"sockets", "stop"}; !slices.Equal(got, want) {
		t.Fatalf("donor calls = %v, want %v", got, want)
	}

	// The control socket was handed over: the new side serves it, and the file stays.
	ctl, err := socks.Listener(ControlName)
	if err != nil {
		t.Fatalf("Listener(control): %v", err)
	}
	next, err := NewServer(ctl, srv.Path())
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close after handover: %v", err)
	}
	if _, err := os.Stat(srv.Path()); err != nil {
		t.Fatalf("control socket after handover: %v, want it kept", err)
	}
	serve(t, next, &donor{})
	tk2 := dialTakeover(t, next.Path())
	if tk2.PID != os.Getpid() {
		t.Fatalf("next hello pid = %d", tk2.PID)
	}
}

func TestTakeover_AbortBeforeStopChangesNothing(t *testing.T) {
	srv := listen(t)
	live := tcpListener(t)
	d := &donor{sockets: func() ([]Socket, error) { return []Socket{{"live", live}}, nil }}
	done := serve(t, srv, d)

	tk := dialTakeover(t, srv.Path())
	socks, err := tk.Sockets(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	socks.Close()
	if err := tk.Abort(errors.New("cannot bind 127.0.0.1:9")); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	// The next takeover is served: the first one is over.
	tk2 := dialTakeover(t, srv.Path())
	tk2.Close()
	if got, want := d.Calls(), []string{"sockets"}; !slices.Equal(got, want) {
		t.Fatalf("donor calls = %v, want %v", got, want)
	}
	select {
	case r := <-done:
		t.Fatalf("Serve returned %d, %v after an aborted takeover", r.pid, r.err)
	default:
	}
}

func TestTakeover_FailureAfterStopResumes(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(tk *Takeover)
	}{
		{"abort", func(tk *Takeover) { tk.Abort(errors.New("open state store: disk full")) }},
		{"hang up", func(tk *Takeover) { tk.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := listen(t)
			resumed := make(chan struct{})
			d := &donor{resume: func(context.Context) error { close(resumed); return nil }}
			serve(t, srv, d)
			tk := dialTakeover(t, srv.Path())
			socks, err := tk.Sockets(ctx10s(t))
			if err != nil {
				t.Fatal(err)
			}
			socks.Close()
			if err := tk.Stop(ctx10s(t)); err != nil {
				t.Fatal(err)
			}
			tc.end(tk)
			select {
			case <-resumed:
			case <-time.After(10 * time.Second):
				t.Fatal("not resumed within 10s")
			}
			if got, want := d.Calls(), []string{"sockets", "stop", "resume"}; !slices.Equal(got, want) {
				t.Fatalf("donor calls = %v, want %v", got, want)
			}
		})
	}
}

// The helper process is this test binary run again as a new server process would: it takes
// over from the server on $HANDOFF_HELPER_PATH, then does what $HANDOFF_HELPER_MODE says.
func TestMain(m *testing.M) {
	if path := os.Getenv("HANDOFF_HELPER_PATH"); path != "" {
		os.Exit(helper(path, os.Getenv("HANDOFF_HELPER_MODE")))
	}
	os.Exit(m.Run())
}

func helper(path, mode string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tk, err := Dial(ctx, path)
	if err != nil {
		os.Stderr.WriteString("helper: " + err.Error() + "\n")
		return 2
	}
	socks, err := tk.Sockets(ctx)
	if err != nil {
		os.Stderr.WriteString("helper: " + err.Error() + "\n")
		return 2
	}
	ln, err := socks.Listener("live")
	if err != nil || ln == nil {
		os.Stderr.WriteString("helper: no live listener\n")
		return 2
	}
	if err := tk.Stop(ctx); err != nil {
		os.Stderr.WriteString("helper: " + err.Error() + "\n")
		return 2
	}
	if mode == "hang" {
		<-ctx.Done() // never says taken: the server kills it
		return 3
	}
	if err := tk.Taken(); err != nil {
		return 2
	}
	c, err := ln.Accept()
	if err != nil {
		return 2
	}
	c.Write([]byte("served by " + strconv.Itoa(os.Getpid())))
	c.Close()
	return 0
}

// startHelper runs the helper process against the server at path.
func startHelper(t *testing.T, path, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HANDOFF_HELPER_PATH="+path, "HANDOFF_HELPER_MODE="+mode)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	return cmd
}

func TestTakeover_AcrossProcesses(t *testing.T) {
	srv := listen(t)
	live := tcpListener(t)
	d := &donor{sockets: func() ([]Socket, error) { return []Socket{{"live", live}}, nil }}
	done := serve(t, srv, d)
	cmd := startHelper(t, srv.Path(), "serve")
	var r served
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("no takeover within 30s")
	}
	if r.err != nil || r.pid != cmd.Process.Pid {
		t.Fatalf("Serve = %d, %v; want the helper's pid %d", r.pid, r.err, cmd.Process.Pid)
	}
	// This process stops accepting; the connection queues until the helper accepts it.
	live.Close()
	c, err := net.DialTimeout("tcp", live.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial the passed socket: %v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if want := "served by " + strconv.Itoa(cmd.Process.Pid); err != nil || string(b) != want {
		t.Fatalf("read %q, %v; want %q", b, err, want)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}

func TestTakeover_TimeoutKillsThenResumes(t *testing.T) {
	srv := listen(t)
	srv.Timeout = time.Second
	resumed := make(chan struct{})
	live := tcpListener(t)
	d := &donor{
		sockets: func() ([]Socket, error) { return []Socket{{"live", live}}, nil },
		resume:  func(context.Context) error { close(resumed); return nil },
	}
	serve(t, srv, d)
	cmd := startHelper(t, srv.Path(), "hang")
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-resumed:
	case <-time.After(30 * time.Second):
		t.Fatal("not resumed within 30s")
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("helper ended with %v, want killed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("helper still running after the resume")
	}
	if got, want := d.Calls(), []string{"sockets", "stop", "resume"}; !slices.Equal(got, want) {
		t.Fatalf("donor calls = %v, want %v", got, want)
	}
}

func TestTakeover_StopFailureResumesAndSaysWhy(t *testing.T) {
	srv := listen(t)
	d := &donor{stop: func(context.Context) error { return errors.New("close state store: busy") }}
	serve(t, srv, d)
	tk := dialTakeover(t, srv.Path())
	socks, err := tk.Sockets(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	socks.Close()
	err = tk.Stop(ctx10s(t))
	if err == nil || !strings.Contains(err.Error(), "close state store: busy") {
		t.Fatalf("Stop = %v, want the running server's reason", err)
	}
	testutil.WaitFor(t, 10*time.Second, "resume", func() bool { return len(d.Calls()) == 3 })
	if got, want := d.Calls(), []string{"sockets", "stop", "resume"}; !slices.Equal(got, want) {
		t.Fatalf("donor calls = %v, want %v", got, want)
	}
}

func TestDial_NotRunningAndStale(t *testing.T) {
	path := socketPath(t)
	if _, err := Dial(ctx10s(t), path); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Dial with no socket = %v, want ErrNotRunning", err)
	}
	// A crashed server leaves its socket file behind: nobody listens on it.
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("stale socket file: %v", err)
	}
	if _, err := Dial(ctx10s(t), path); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Dial on a stale socket = %v, want ErrNotRunning", err)
	}
	srv, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Fatalf("control socket mode = %o, want 600", got)
	}
	serve(t, srv, &donor{})
	tk := dialTakeover(t, path)
	tk.Close()

	// A second server on the same path is refused, naming the running one.
	_, err = Listen(path)
	if !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second Listen = %v, want ErrRunning with the pid", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket after Close: %v, want removed", err)
	}
}

func TestListen_PathTooLong(t *testing.T) {
	path := "/tmp/" + strings.Repeat("d", 120) + "/" + SocketName
	if _, err := Listen(path); !errors.Is(err, ErrPathTooLong) || !strings.Contains(err.Error(), "data_dir") {
		t.Fatalf("Listen(long path) = %v, want ErrPathTooLong naming data_dir", err)
	}
	if _, err := Dial(context.Background(), path); !errors.Is(err, ErrPathTooLong) {
		t.Fatalf("Dial(long path) = %v, want ErrPathTooLong", err)
	}
}

// fakeOld listens on path and answers each connection with the given packets.
func fakeOld(t *testing.T, path string, packets ...string) {
	t.Helper()
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			if len(packets) == 0 {
				c.Close()
				continue
			}
			for _, p := range packets {
				c.Write([]byte(p))
			}
			// Drain whatever comes, then hang up.
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
}

func TestDial_ProtocolErrorsAreClear(t *testing.T) {
	cases := []struct {
		name    string
		packets []string
		want    string
	}{
		{"not json", []string{"HTTP/1.1 200 OK"}, "handoff protocol: message"},
		{"unknown type", []string{`{"type":"welcome"}`}, `unknown message type "welcome"`},
		{"no pid", []string{`{"type":"hello","proto":1}`}, "hello with pid 0"},
		{"other version", []string{`{"type":"hello","pid":7,"proto":99}`}, "speaks version 99, this binary 1"},
		{"error", []string{`{"type":"error","error":"uid 5 may not take over"}`}, "uid 5 may not take over"},
		{"wrong step", []string{`{"type":"stopped"}`}, "got stopped, want hello"},
		{"hung up", nil, "EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := socketPath(t)
			fakeOld(t, path, tc.packets...)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err := Dial(ctx, path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDial_SocketsWithoutDescriptors(t *testing.T) {
	path := socketPath(t)
	fakeOld(t, path, `{"type":"hello","pid":7,"proto":1}`, `{"type":"sockets","names":["live","admin"]}`)
	tk := dialTakeover(t, path)
	_, err := tk.Sockets(ctx10s(t))
	if err == nil || !strings.Contains(err.Error(), "2 socket names but 0 descriptors") {
		t.Fatalf("Sockets = %v, want a count mismatch", err)
	}
}

func TestServer_AnswersProtocolErrors(t *testing.T) {
	srv := listen(t)
	d := &donor{}
	serve(t, srv, d)
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: srv.Path(), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cc := conn{c}
	if _, _, err := cc.expect(msgHello); err != nil {
		t.Fatal(err)
	}
	// "stop" before asking for the sockets.
	if err := cc.send(message{Type: msgStop}); err != nil {
		t.Fatal(err)
	}
	_, _, err = cc.expect(msgSockets)
	var pe *PeerError
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "got stop, want takeover") {
		t.Fatalf("answer = %v, want the server's error naming the step", err)
	}
	if len(d.Calls()) != 0 {
		t.Fatalf("donor calls = %v, want none", d.Calls())
	}
}

func TestServer_CloseEndsATakeoverBeforeStop(t *testing.T) {
	srv := listen(t)
	d := &donor{}
	done := serve(t, srv, d)
	tk := dialTakeover(t, srv.Path())
	socks, err := tk.Sockets(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	socks.Close()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if r := <-done; !errors.Is(r.err, ErrServerClosed) {
		t.Fatalf("Serve = %d, %v; want ErrServerClosed", r.pid, r.err)
	}
	if err := tk.Stop(ctx10s(t)); err == nil {
		t.Fatal("Stop after the server closed succeeded")
	}
	if got, want := d.Calls(), []string{"sockets"}; !slices.Equal(got, want) {
		t.Fatalf("donor calls = %v, want %v", got, want)
	}
}

func TestDup_OutlivesTheOriginal(t *testing.T) {
	ln := tcpListener(t)
	socks, err := Dup([]Socket{{"live", ln}})
	if err != nil {
		t.Fatal(err)
	}
	defer socks.Close()
	addr := ln.Addr().String()
	ln.Close()
	dup, err := socks.Listener("live")
	if err != nil {
		t.Fatal(err)
	}
	defer dup.Close()
	acceptOne(t, dup, addr)
	// The original's accept loop must stay non-blocking: the flags are shared.
	rc, _ := dup.(*net.TCPListener).SyscallConn()
	var flags int
	rc.Control(func(fd uintptr) {
		r, _, _ := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		flags = int(r)
	})
	if flags&syscall.O_NONBLOCK == 0 {
		t.Fatal("the duplicated socket is in blocking mode")
	}
}

func TestSameAddr(t *testing.T) {
	tcp := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	cases := []struct {
		name string
		want string
		got  net.Addr
		same bool
	}{
		{"same", "127.0.0.1:8080", tcp("127.0.0.1:8080"), true},
		{"other port", "127.0.0.1:8080", tcp("127.0.0.1:8081"), false},
		{"port 0 is any", "127.0.0.1:0", tcp("127.0.0.1:40000"), true},
		{"other ip", "127.0.0.2:8080", tcp("127.0.0.1:8080"), false},
		{"empty host", ":8080", tcp("[::]:8080"), true},
		{"v4 any is v6 any", "0.0.0.0:8080", tcp("[::]:8080"), true},
		{"any is not loopback", "0.0.0.0:8080", tcp("127.0.0.1:8080"), false},
		{"loopback is not any", "127.0.0.1:8080", tcp("[::]:8080"), false},
		{"v6 loopback", "[::1]:8080", tcp("[::1]:8080"), true},
		{"localhost", "localhost:8080", tcp("127.0.0.1:8080"), true},
		{"no port", "127.0.0.1", tcp("127.0.0.1:8080"), false},
		{"bad port", "127.0.0.1:x-no-such-service", tcp("127.0.0.1:8080"), false},
		{"unix addr", "127.0.0.1:8080", &net.UnixAddr{Name: "/x", Net: "unix"}, false},
		{"udp", "127.0.0.1:53", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := SameAddr(tc.want, tc.got); got != tc.same {
				t.Fatalf("SameAddr(%q, %v) = %v, want %v", tc.want, tc.got, got, tc.same)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want string // "" = valid
	}{
		{"hello", `{"type":"hello","pid":1,"proto":1,"app":"shop"}`, ""},
		{"takeover", `{"type":"takeover","pid":2}`, ""},
		{"sockets", `{"type":"sockets","names":["live","endpoint-blue","control"]}`, ""},
		{"stop", `{"type":"stop"}`, ""},
		{"abort", `{"type":"abort","error":"x"}`, ""},
		{"empty", ``, "message"},
		{"no type", `{}`, `unknown message type ""`},
		{"hello without proto", `{"type":"hello","pid":1}`, "proto 0"},
		{"takeover without pid", `{"type":"takeover"}`, "takeover with pid 0"},
		{"bad name", `{"type":"sockets","names":["Live"]}`, `socket name "Live"`},
		{"empty name", `{"type":"sockets","names":[""]}`, `socket name ""`},
		{"twice", `{"type":"sockets","names":["live","live"]}`, `"live" passed twice`},
		{"too many", `{"type":"sockets","names":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q","r","s","t","u","v","w","x","y","z","a1","b1","c1","d1","e1","f1","g1"]}`, "33 sockets: at most 32"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode([]byte(tc.in))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("decode(%s) = %v, want valid", tc.in, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrProtocol)):
				t.Fatalf("decode(%s) = %v, want ErrProtocol containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"type":"hello","pid":1,"proto":1,"app":"shop"}`))
	f.Add([]byte(`{"type":"sockets","names":["live","endpoint-blue","control"]}`))
	f.Add([]byte(`{"type":"error","error":"x"}`))
	f.Add([]byte(`{"type":"sockets","names":["live","live"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("decode error %v is not ErrProtocol", err)
			}
			return
		}
		if m.Type == msgSockets {
			seen := map[string]bool{}
			for _, n := range m.Names {
				if checkName(n) != nil || seen[n] {
					t.Fatalf("decode accepted names %q", m.Names)
				}
				seen[n] = true
			}
		}
	})
}
