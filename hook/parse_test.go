package hook

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseInstances(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want []entry
		err  string // a part of the error; "" for none
	}{
		{"one", `[{"addr":"10.0.0.5:8080"}]`, []entry{{Addr: "10.0.0.5:8080"}}, ""},
		{"ids and spacing", "\n  [ {\"addr\": \"10.0.0.5:8080\", \"id\": \"i-0abc\"},\n {\"addr\":\"10.0.0.6:8080\",\"id\":\"i-0def\"} ]\n",
			[]entry{{"10.0.0.5:8080", "i-0abc"}, {"10.0.0.6:8080", "i-0def"}}, ""},
		{"other keys ignored", `[{"addr":"ip-10-0-0-5.ec2.internal:80","az":"eu-west-1a","private_ip":"10.0.0.5"}]`,
			[]entry{{Addr: "ip-10-0-0-5.ec2.internal:80"}}, ""},
		{"ipv6", `[{"addr":"[fd00::5]:8080"}]`, []entry{{Addr: "[fd00::5]:8080"}}, ""},
		{"host name with trailing dot", `[{"addr":"app.internal.:443"}]`, []entry{{Addr: "app.internal.:443"}}, ""},
		{"port 65535", `[{"addr":"10.0.0.5:65535"}]`, []entry{{Addr: "10.0.0.5:65535"}}, ""},

		{"empty", "", nil, "printed nothing on stdout"},
		{"blank", " \n\t", nil, "printed nothing on stdout"},
		{"text", "Apply complete! Resources: 2 added.", nil, `printed no JSON array of instances (invalid character 'A' looking for beginning of value); stdout must hold only that array`},
		{"log line first", "creating\n[{\"addr\":\"10.0.0.5:80\"}]", nil, `stdout began with "creating\n[{\"addr\"`},
		{"array then more", `[{"addr":"10.0.0.5:80"}] done`, nil, "printed no JSON array of instances (invalid character 'd' after top-level value)"},
		{"two arrays", `[{"addr":"10.0.0.5:80"}][{"addr":"10.0.0.6:80"}]`, nil, "printed no JSON array of instances"},
		{"object", `{"addr":"10.0.0.5:80"}`, nil, "printed no JSON array of instances (it is a JSON object, not an array)"},
		{"string", `"10.0.0.5:80"`, nil, "it is a JSON string, not an array"},
		{"null", `null`, nil, "printed null; want a JSON array of instances"},
		{"empty array", `[]`, nil, "printed an empty array: no instances"},
		{"truncated", `[{"addr":"10.0.0.5:80"`, nil, "printed no JSON array of instances (unexpected end of JSON input)"},
		{"long excerpt", strings.Repeat("x", 300), nil, `stdout began with "` + strings.Repeat("x", 200) + `"…`},
		{"array of strings", `["10.0.0.5:80"]`, nil, `printed a bad instance 0: "\"10.0.0.5:80\"" is not an object with a string "addr"`},
		{"addr a number", `[{"addr":8080}]`, nil, `printed a bad instance 0: "{\"addr\":8080}" is not an object`},
		{"no addr", `[{"id":"i-0abc"}]`, nil, `printed a bad instance 0: addr "": missing: want "addr": "host:port"`},
		{"no port", `[{"addr":"10.0.0.5"}]`, nil, `addr "10.0.0.5": not host:port`},
		{"ipv6 without brackets", `[{"addr":"fd00::5:80"}]`, nil, `addr "fd00::5:80": not host:port`},
		{"port 0", `[{"addr":"10.0.0.5:0"}]`, nil, `port "0": want 1..65535`},
		{"port 65536", `[{"addr":"10.0.0.5:65536"}]`, nil, `port "65536": want 1..65535`},
		{"port name", `[{"addr":"10.0.0.5:http"}]`, nil, `port "http": want 1..65535`},
		{"port signed", `[{"addr":"10.0.0.5:+80"}]`, nil, `port "+80": want 1..65535`},
		{"no host", `[{"addr":":8080"}]`, nil, "no host: want the instance's address"},
		{"unspecified", `[{"addr":"0.0.0.0:8080"}]`, nil, "host 0.0.0.0 is unspecified"},
		{"unspecified v6", `[{"addr":"[::]:8080"}]`, nil, "host :: is unspecified"},
		{"host with space", `[{"addr":"my host:8080"}]`, nil, `host "my host": want an IP address or a host name`},
		{"host with scheme", `[{"addr":"http://10.0.0.5:8080"}]`, nil, `not host:port`},
		{"label too long", `[{"addr":"` + strings.Repeat("a", 64) + `.internal:80"}]`, nil, "want an IP address or a host name"},
		{"id too long", `[{"addr":"10.0.0.5:80","id":"` + strings.Repeat("i", 257) + `"}]`, nil, `id "` + strings.Repeat("i", 257) + `": 257 bytes: want at most 256`},
		{"id with newline", `[{"addr":"10.0.0.5:80","id":"i-0\nabc"}]`, nil, `character '\n': want printable characters only`},
		{"duplicate", `[{"addr":"10.0.0.5:80"},{"addr":"10.0.0.6:80"},{"addr":"10.0.0.5:80"}]`, nil,
			`printed instances 0 and 2 with the same addr "10.0.0.5:80"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInstances([]byte(tt.out))
			if tt.err == "" {
				if err != nil {
					t.Fatalf("parseInstances(%q): %v", tt.out, err)
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("parseInstances(%q) = %+v, want %+v", tt.out, got, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("parseInstances(%q) = %+v, %v; want an error with %q", tt.out, got, err, tt.err)
			}
		})
	}
}

// FuzzParseInstances checks that whatever launch prints, parsing does not panic, and what it
// accepts is at least one instance, each with a distinct, reachable-looking host:port.
func FuzzParseInstances(f *testing.F) {
	for _, s := range []string{
		`[{"addr":"10.0.0.5:8080","id":"i-0abc"},{"addr":"10.0.0.6:8080"}]`,
		`[{"addr":"[fd00::5]:8080"}]`,
		`[{"addr":"host.internal.:1"}]`,
		`[{"addr":"10.0.0.5:0"}]`,
		`[]`, `null`, `{}`, `garbage`, ``, `[{"addr":":80"}]`, `[1,2]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		got, err := parseInstances(out)
		if err != nil {
			if got != nil {
				t.Fatalf("parseInstances(%q) = %+v with error %v, want nothing", out, got, err)
			}
			return
		}
		if len(got) == 0 {
			t.Fatalf("parseInstances(%q) accepted no instances", out)
		}
		seen := make(map[string]bool)
		for _, e := range got {
			host, port, err := net.SplitHostPort(e.Addr)
			if err != nil || host == "" {
				t.Fatalf("parseInstances(%q) accepted addr %q: %v", out, e.Addr, err)
			}
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				t.Fatalf("parseInstances(%q) accepted port %q", out, port)
			}
			if seen[e.Addr] {
				t.Fatalf("parseInstances(%q) accepted addr %q twice", out, e.Addr)
			}
			seen[e.Addr] = true
			if len(e.ID) > maxID {
				t.Fatalf("parseInstances(%q) accepted an id of %d bytes", out, len(e.ID))
			}
		}
	})
}
