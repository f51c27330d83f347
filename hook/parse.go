package hook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
)

// entry is one instance as launch prints it.
type entry struct {
	// Addr is host:port, where teal health-checks the instance and routes to it.
	Addr string `json:"addr"`
	// ID is the infrastructure's name for it (an EC2 instance id), kept as its Identity.
	ID string `json:"id"`
}

const (
	// excerptBytes is how much of a bad stdout an error quotes.
	excerptBytes = 200
	// maxID bounds an instance id: a name, not a document.
	maxID = 256
)

// example is the shape launch must print, for error messages.
const example = `[{"addr":"10.0.0.5:8080","id":"i-0abc"}, …]`

// parseInstances parses what launch printed on stdout: a JSON array of at least one object
// with a distinct "addr" (host:port) and an optional "id". Other keys are ignored, so that
// a richer object (a Terraform output) can be printed as it is.
func parseInstances(out []byte) ([]entry, error) {
	trimmed := bytes.TrimSpace(out)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("printed nothing on stdout; want a JSON array of instances like %s", example)
	}
	if string(trimmed) == "null" {
		return nil, fmt.Errorf("printed null; want a JSON array of instances like %s", example)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(trimmed, &raw); err != nil {
		return nil, fmt.Errorf("printed no JSON array of instances (%v); stdout must hold only that array, like %s, and logs go to stderr; stdout began with %s",
			describeJSONError(err), example, excerpt(out))
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("printed an empty array: no instances; want at least one, like %s", example)
	}
	entries := make([]entry, len(raw))
	seen := make(map[string]int, len(raw))
	for i, r := range raw {
		var e entry
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("printed a bad instance %d: %s is not an object with a string \"addr\" (and \"id\"), like %s",
				i, excerpt(r), `{"addr":"10.0.0.5:8080","id":"i-0abc"}`)
		}
		if err := checkAddr(e.Addr); err != nil {
			return nil, fmt.Errorf("printed a bad instance %d: addr %q: %w", i, e.Addr, err)
		}
		if err := checkID(e.ID); err != nil {
			return nil, fmt.Errorf("printed a bad instance %d: id %q: %w", i, e.ID, err)
		}
		if j, dup := seen[e.Addr]; dup {
			return nil, fmt.Errorf("printed instances %d and %d with the same addr %q: each instance needs its own address", j, i, e.Addr)
		}
		seen[e.Addr] = i
		entries[i] = e
	}
	return entries, nil
}

// checkAddr accepts host:port where teal can reach an instance: an IP address that is not
// unspecified (0.0.0.0, ::), or a host name, and a port 1..65535.
func checkAddr(addr string) error {
	if addr == "" {
		return errors.New(`missing: want "addr": "host:port", like 10.0.0.5:8080`)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("not host:port, like 10.0.0.5:8080 or [fd00::5]:8080 (%w)", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '-' {
		return fmt.Errorf("port %q: want 1..65535", port)
	}
	if host == "" {
		return errors.New("no host: want the instance's address, like 10.0.0.5:8080")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsUnspecified() {
			return fmt.Errorf("host %s is unspecified: want the address teal can reach the instance at", host)
		}
		return nil
	}
	if !validHostName(host) {
		return fmt.Errorf("host %q: want an IP address or a host name (letters, digits, - and .)", host)
	}
	return nil
}

// validHostName reports whether s is a DNS host name: labels of letters, digits, - and _
// (as some internal names have), 1..63 bytes each, 253 in all, a trailing dot allowed.
func validHostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// checkID accepts an optional identifier of printable characters, up to maxID bytes.
func checkID(id string) error {
	if len(id) > maxID {
		return fmt.Errorf("%d bytes: want at most %d", len(id), maxID)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("character %q: want printable characters only", r)
		}
	}
	return nil
}

// describeJSONError says briefly what was wrong with a would-be array.
func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "it is a JSON " + te.Value + ", not an array"
	}
	return err.Error()
}

// excerpt quotes the first excerptBytes of b.
func excerpt(b []byte) string {
	if len(b) > excerptBytes {
		return strconv.Quote(string(b[:excerptBytes])) + "…"
	}
	return strconv.Quote(string(b))
}
