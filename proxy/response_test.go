package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// parsed is a response as the pool reads it: the head, the forwarded header, the body and
// the trailer.
type parsed struct {
	status  int
	header  http.Header
	body    []byte
	trailer http.Header
	conn    []string // the Connection field values
}

// readResponse reads one final response from raw the way the pool does, interim ones
// skipped, with a read buffer of size bytes.
func readResponse(raw []byte, method string, size int) (parsed, error) {
	r := &reader{br: bufio.NewReaderSize(bytes.NewReader(raw), size)}
	var h head
	for {
		if err := r.readHead(&h, method); err != nil {
			return parsed{}, err
		}
		if h.status >= 200 || h.status == http.StatusSwitchingProtocols {
			break
		}
	}
	p := parsed{status: h.status, header: http.Header{}, trailer: http.Header{}, conn: h.connTokens}
	h.copyHeader(p.header)
	b := body{r: r}
	b.reset(&h)
	for {
		q, err := b.next()
		p.body = append(p.body, q...)
		b.advance(len(q))
		if err == io.EOF {
			break
		}
		if err != nil {
			return parsed{}, err
		}
	}
	for _, f := range b.trailer[:b.trailerN] {
		p.trailer[f.key] = append(p.trailer[f.key], f.value)
	}
	return p, nil
}

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name, raw, method string
		wantStatus        int
		wantBody          string
		wantHeader        http.Header
		wantTrailer       http.Header
		wantErr           string
	}{
		{name: "length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\n\r\nabcdef",
			wantStatus: 200, wantBody: "abc", wantHeader: http.Header{"Content-Length": {"3"}, "X-A": {"1"}}},
		{name: "chunked with trailer", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n" +
			"3\r\nabc\r\n1;x=y\r\nd\r\n0\r\nX-T: 9\r\n\r\n",
			wantStatus: 200, wantBody: "abcd", wantHeader: http.Header{}, wantTrailer: http.Header{"X-T": {"9"}}},
		{name: "close delimited", raw: "HTTP/1.1 200 OK\r\n\r\nto the end",
			wantStatus: 200, wantBody: "to the end", wantHeader: http.Header{}},
		{name: "HEAD", raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", method: http.MethodHead,
			wantStatus: 200, wantHeader: http.Header{"Content-Length": {"10"}}},
		{name: "interim then final", raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
			wantStatus: 204, wantHeader: http.Header{}},
		{name: "long header line", raw: "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("v", 500) + "\r\nContent-Length: 0\r\n\r\n",
			wantStatus: 200, wantHeader: http.Header{"X-Long": {strings.Repeat("v", 500)}, "Content-Length": {"0"}}},
		{name: "HTTP/2", raw: "HTTP/2.0 200 OK\r\n\r\n", wantErr: "want HTTP/1.0 or HTTP/1.1"},
		{name: "two-digit status", raw: "HTTP/1.1 99 Odd\r\n\r\n", wantErr: "malformed response status code"},
		{name: "status below 100", raw: "HTTP/1.1 099 Odd\r\n\r\n", wantErr: "malformed response status code"},
		{name: "no colon", raw: "HTTP/1.1 200 OK\r\nX-A 1\r\n\r\n", wantErr: "malformed response header line"},
		{name: "control byte in value", raw: "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", wantErr: "malformed response header value"},
		{name: "continuation first", raw: "HTTP/1.1 200 OK\r\n X-A: 1\r\n\r\n", wantErr: "continuation line first"},
		{name: "huge chunk", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("f", 17) + "\r\n",
			wantErr: "chunk size too large"},
		{name: "chunk without CRLF", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naX0\r\n\r\n",
			wantErr: "malformed chunked encoding"},
		{name: "bad trailer name announced", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n",
			wantErr: "announces Content-Length as a trailer"},
		{name: "short body", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", wantErr: "unexpected EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			// A small buffer, so that long lines take the long way.
			got, err := readResponse([]byte(tc.raw), method, 64)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v, want none", err)
			}
			if got.status != tc.wantStatus || string(got.body) != tc.wantBody {
				t.Fatalf("status, body = %d %q, want %d %q", got.status, got.body, tc.wantStatus, tc.wantBody)
			}
			if !equalHeader(got.header, tc.wantHeader) {
				t.Fatalf("header = %v, want %v", got.header, tc.wantHeader)
			}
			if tc.wantTrailer == nil {
				tc.wantTrailer = http.Header{}
			}
			if !equalHeader(got.trailer, tc.wantTrailer) {
				t.Fatalf("trailer = %v, want %v", got.trailer, tc.wantTrailer)
			}
		})
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || strings.Join(v, "\x00") != strings.Join(w, "\x00") {
			return false
		}
	}
	return true
}

// FuzzReadResponse reads arbitrary bytes as a backend's response with the pool's reader and
// with net/http's, and wants them to agree: whatever net/http takes (as HTTP/1.x with a valid
// status) the pool takes too, with the same status, end-to-end header fields, body and
// trailer; and the pool takes nothing net/http refuses.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nbody",
		"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nConnection: X-A, close\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\nContent-Length: 2\nContent-Length: 2\n\nok",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, raw []byte, isHead bool) {
		method := http.MethodGet
		if isHead {
			method = http.MethodHead
		}
		// net/http's buffer size, which bounds a trailer for both.
		got, err := readResponse(raw, method, 4096)

		br := bufio.NewReader(bytes.NewReader(raw))
		var res *http.Response
		var goErr error
		for {
			res, goErr = http.ReadResponse(br, &http.Request{Method: method})
			if goErr == nil && (res.Proto != "HTTP/1.0" && res.Proto != "HTTP/1.1" || res.StatusCode < 100 || res.StatusCode > 999) {
				return // the pool refuses what http.Server could not send on anyway
			}
			if goErr != nil || res.StatusCode >= 200 || res.StatusCode == 101 {
				break
			}
		}
		var goBody []byte
		if goErr == nil {
			goBody, goErr = io.ReadAll(res.Body)
		}
		if goErr != nil {
			if err == nil {
				t.Fatalf("pool took %q (status %d), net/http refused it: %v", raw, got.status, goErr)
			}
			return
		}
		if err != nil {
			if strings.Contains(err.Error(), "too many 1xx") {
				return
			}
			t.Fatalf("pool refused %q: %v; net/http took it", raw, err)
		}
		if got.status != res.StatusCode || !bytes.Equal(got.body, goBody) {
			t.Fatalf("pool read %d %q, net/http %d %q", got.status, got.body, res.StatusCode, goBody)
		}
		// End-to-end fields only: what both would forward. net/http keeps the Connection
		// field unless it says close; then the pool's reading of it has to do.
		conn := res.Header["Connection"]
		if conn == nil {
			conn = got.conn
		}
		want := http.Header{}
		for k, v := range res.Header {
			if forwardable(k, conn) {
				want[k] = v
			}
		}
		for k := range got.header {
			if !forwardable(k, conn) {
				t.Fatalf("pool forwards hop-by-hop %s of %q", k, raw)
			}
		}
		if !equalHeader(got.header, want) {
			t.Fatalf("pool header %v, net/http %v for %q", got.header, want, raw)
		}
		goTrailer := http.Header{}
		for k, v := range res.Trailer {
			if v != nil {
				goTrailer[k] = v
			}
		}
		if !equalHeader(got.trailer, goTrailer) {
			t.Fatalf("pool trailer %v, net/http %v for %q", got.trailer, goTrailer, raw)
		}
	})
}

// forwardable reports whether field k is end-to-end: not hop-by-hop, and not named by the
// Connection field values conn.
func forwardable(k string, conn []string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return false
	}
	return !listed(conn, k)
}
