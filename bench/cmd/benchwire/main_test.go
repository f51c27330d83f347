package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pcapWriter writes a little-endian, nanosecond pcap of Ethernet/IPv4/TCP packets, as a
// capture of the loopback device holds them.
type pcapWriter struct{ buf bytes.Buffer }

func newPcap(t *testing.T) *pcapWriter {
	t.Helper()
	w := &pcapWriter{}
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h[0:], 0xa1b23c4d)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 262144)
	binary.LittleEndian.PutUint32(h[20:], linkEthernet)
	w.buf.Write(h)
	return w
}

// seg adds a TCP segment from port src to port dst at time at, carrying payload.
func (w *pcapWriter) seg(at time.Duration, src, dst uint16, payload string) {
	tcp := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(tcp[0:], src)
	binary.BigEndian.PutUint16(tcp[2:], dst)
	tcp[12] = 5 << 4
	copy(tcp[20:], payload)
	ip := make([]byte, 20, 20+len(tcp))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
	ip[9] = 6
	ip = append(ip, tcp...)
	eth := make([]byte, 14, 14+len(ip))
	binary.BigEndian.PutUint16(eth[12:], 0x0800)
	pkt := append(eth, ip...)
	rh := make([]byte, 16)
	binary.LittleEndian.PutUint32(rh[0:], uint32(at/time.Second))
	binary.LittleEndian.PutUint32(rh[4:], uint32(at%time.Second))
	binary.LittleEndian.PutUint32(rh[8:], uint32(len(pkt)))
	binary.LittleEndian.PutUint32(rh[12:], uint32(len(pkt)))
	w.buf.Write(rh)
	w.buf.Write(pkt)
}

func TestRun_PairsBothSides(t *testing.T) {
	const proxy, up = 18080, 18081
	w := newPcap(t)
	us := time.Microsecond
	base := 1000 * time.Second
	// Request 7 on client connection 40000, forwarded on upstream connection 50000;
	// request 8 on client connection 40001, forwarded on the same upstream connection later.
	w.seg(base, 40000, proxy, "GET /?n=7 HTTP/1.1\r\nHost: x\r\n\r\n")
	w.seg(base+30*us, 40001, proxy, "GET /a?x=1&n=8 HTTP/1.1\r\n\r\n")
	w.seg(base+50*us, 50000, up, "GET /?n=7 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n")
	w.seg(base+250*us, up, 50000, "HTTP/1.1 200 OK\r\n\r\n")         // upstream took 200 µs
	w.seg(base+260*us, up, 50000, "the rest of the body")            // ignored
	w.seg(base+300*us, proxy, 40000, "HTTP/1.1 200 OK\r\n\r\n")      // 7: 300 µs in all, 100 added
	w.seg(base+400*us, 50000, up, "GET /a?x=1&n=8 HTTP/1.1\r\n\r\n") // 8 waited 370 µs
	w.seg(base+500*us, up, 50000, "HTTP/1.1 200 OK\r\n\r\n")
	w.seg(base+520*us, proxy, 40001, "HTTP/1.1 200 OK\r\n\r\n")    // 8: 490 in all, 390 added
	w.seg(base+600*us, 40002, proxy, "GET /?n=9 HTTP/1.1\r\n\r\n") // never answered
	file := filepath.Join(t.TempDir(), "cap.pcap")
	if err := os.WriteFile(file, w.buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run([]string{"-proxy", "18080", "-upstream", "18081", file}, &out, &errOut); err != nil {
		t.Fatalf("run: %v (%s)", err, errOut.String())
	}
	got := out.String()
	for _, want := range []string{"requests=2 ", "unpaired=0 ", "added_p50_ms=0.100 ", "added_max_ms=0.390 ",
		"in_p99_ms=0.370 ", "out_p99_ms=0.050\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q: want %q in it", got, want)
		}
	}
}

func TestRun_Refuses(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pcap")
	if err := os.WriteFile(empty, newPcap(t).buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	notPcap := filepath.Join(dir, "x.pcapng")
	if err := os.WriteFile(notPcap, []byte("\x0a\x0d\x0d\x0a and more bytes than a header"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no file", nil, "want one capture file"},
		{"same ports", []string{"-proxy", "1", "-upstream", "1", empty}, "two different ports"},
		{"port out of range", []string{"-proxy", "70000", empty}, "from 1 to 65535"},
		{"nothing paired", []string{empty}, "no request was seen on both sides"},
		{"pcapng", []string{notPcap}, "not a pcap file"},
		{"missing", []string{filepath.Join(dir, "nope")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(tc.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run(%q) = %v, want an error with %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestRequestNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int64
		isOK bool
	}{
		{"GET /?n=12 HTTP/1.1\r\n", 12, true},
		{"GET /p?a=1&n=0 HTTP/1.1", 0, true},
		{"GET /p?nn=3&n=4", 4, true},
		{"HEAD /?n=5\r\n", 5, true},
		{"GET / HTTP/1.1", 0, false},
		{"GET /?n= HTTP/1.1", 0, false},
		{"GET /?n=-1 HTTP/1.1", 0, false},
		{"GET /?n=1x HTTP/1.1", 0, false},
		{"GET /?n=1234567890123456789 HTTP/1.1", 1234567890123456789, true},
		{"GET /?n=12345678901234567890 HTTP/1.1", 0, false}, // more than an int64
		{"GET /?n=+1 HTTP/1.1", 0, false},
		{"HTTP/1.1 200 OK\r\n", 0, false},
		{"GET", 0, false},
		{"", 0, false},
	} {
		n, ok := requestNumber([]byte(tc.in))
		if n != tc.n || ok != tc.isOK {
			t.Errorf("requestNumber(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.isOK)
		}
	}
}

func TestReadPcap_BigEndianMicroseconds(t *testing.T) {
	// The same segment in a big-endian, microsecond file: the format's other spellings.
	var b bytes.Buffer
	h := make([]byte, 24)
	binary.BigEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.BigEndian.PutUint32(h[20:], linkSLL)
	b.Write(h)
	pkt := make([]byte, 16+20+20+3)
	binary.BigEndian.PutUint16(pkt[14:], 0x0800)
	ip := pkt[16:]
	ip[0], ip[9] = 0x45, 6
	binary.BigEndian.PutUint16(ip[2:], 43)
	binary.BigEndian.PutUint16(ip[20:], 1)
	binary.BigEndian.PutUint16(ip[22:], 2)
	ip[32] = 5 << 4
	copy(ip[40:], "abc")
	for _, usec := range []uint32{5, 7} {
		rh := make([]byte, 16)
		binary.BigEndian.PutUint32(rh[0:], 3)
		binary.BigEndian.PutUint32(rh[4:], usec)
		binary.BigEndian.PutUint32(rh[8:], uint32(len(pkt)))
		b.Write(rh)
		b.Write(pkt)
	}
	var got []string
	err := readPcap(&b, func(at time.Duration, src, dst uint16, payload []byte) {
		got = append(got, at.String()+" "+string(payload))
		if src != 1 || dst != 2 {
			t.Errorf("ports %d → %d, want 1 → 2", src, dst)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "0s abc,2µs abc" {
		t.Errorf("segments %q, want the two at 0s and 2µs", got)
	}
}

// FuzzReadPcap: any bytes are read without a panic, and every payload handed on lies within
// the packet.
func FuzzReadPcap(f *testing.F) {
	w := newPcap(&testing.T{})
	w.seg(time.Second, 1, 2, "GET /?n=1 HTTP/1.1\r\n\r\n")
	f.Add(w.buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = readPcap(bytes.NewReader(b), func(_ time.Duration, _, _ uint16, payload []byte) {
			if len(payload) > len(b) {
				t.Fatalf("payload of %d bytes from %d bytes of input", len(payload), len(b))
			}
			requestNumber(payload)
		})
	})
}
