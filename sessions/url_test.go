package sessions

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		network  string
		addr     string
		db       int
		user     string
		password string
		tls      bool
	}{
		{"host and port", "redis://127.0.0.1:6379", "tcp", "127.0.0.1:6379", 0, "", "", false},
		{"database", "redis://127.0.0.1:6379/3", "tcp", "127.0.0.1:6379", 3, "", "", false},
		{"default port", "redis://cache.internal", "tcp", "cache.internal:6379", 0, "", "", false},
		{"no host", "redis://:7000", "tcp", "localhost:7000", 0, "", "", false},
		{"IPv6", "redis://[::1]:6380/1", "tcp", "[::1]:6380", 1, "", "", false},
		{"user and password", "redis://app:s3cret@h:6379/2", "tcp", "h:6379", 2, "app", "s3cret", false},
		{"password only", "redis://:s3cret@h", "tcp", "h:6379", 0, "", "s3cret", false},
		{"encoded password", "redis://app:p%40ss%2Fw@h", "tcp", "h:6379", 0, "app", "p@ss/w", false},
		// net/url splits at the last '@' of the authority, so '@' needs no encoding.
		{"password with @", "redis://app:p@ss@h", "tcp", "h:6379", 0, "app", "p@ss", false},
		{"TLS", "rediss://app:pw@h:6380", "tcp", "h:6380", 0, "app", "pw", true},
		{"unix socket", "unix:///run/redis/redis.sock", "unix", "/run/redis/redis.sock", 0, "", "", false},
		{"unix socket, database and password", "unix://app:pw@/run/redis.sock?db=4", "unix", "/run/redis.sock", 4, "app", "pw", false},
		{"db query", "redis://h?db=5", "tcp", "h:6379", 5, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseURL(tt.url)
			if err != nil {
				t.Fatalf("ParseURL(%q) = %v, want no error", tt.url, err)
			}
			if o.Network != tt.network || o.Addr != tt.addr || o.DB != tt.db {
				t.Fatalf("ParseURL(%q) = %s %s db %d, want %s %s db %d",
					tt.url, o.Network, o.Addr, o.DB, tt.network, tt.addr, tt.db)
			}
			if o.Username != tt.user || o.Password != tt.password {
				t.Fatalf("ParseURL(%q) user, password = %q, %q, want %q, %q",
					tt.url, o.Username, o.Password, tt.user, tt.password)
			}
			if got := o.TLSConfig != nil; got != tt.tls {
				t.Fatalf("ParseURL(%q) TLS = %v, want %v", tt.url, got, tt.tls)
			}
		})
	}
	t.Run("query options", func(t *testing.T) {
		o, err := ParseURL("redis://h?dial_timeout=3s")
		if err != nil {
			t.Fatal(err)
		}
		if o.DialTimeout != 3*time.Second {
			t.Fatalf("DialTimeout = %s, want 3s", o.DialTimeout)
		}
	})
}

func TestParseURL_Errors(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		{"empty", "", "redis URL is empty: want redis://"},
		{"blank", "  ", "redis URL is empty"},
		{"no scheme, host:port", "127.0.0.1:6379", "first path segment in URL cannot contain colon"},
		{"no scheme, name:port", "localhost:6379", `scheme "localhost" is not redis, rediss or unix`},
		{"no scheme, name", "localhost", `"localhost" has no scheme`},
		{"http", "http://h:6379", `scheme "http" is not redis, rediss or unix: want redis://`},
		{"no slashes", "redis:h", "no // after redis:"},
		{"port zero", "redis://h:0", `port "0" is not between 1 and 65535`},
		{"port too big", "redis://h:65536", `port "65536" is not between 1 and 65535`},
		{"port not a number", "redis://h:six", `invalid port ":six" after host`},
		{"database not a number", "redis://h/zero", `invalid database number: "zero"`},
		{"negative database", "redis://h/-1", "database -1 is negative"},
		{"two path segments", "redis://h/1/2", "invalid URL path: /1/2"},
		{"unknown option", "redis://h?colour=blue", "unexpected option: colour"},
		{"unix without path", "unix://", "empty unix socket path"},
		{"unix with two slashes", "unix://run/redis.sock", `socket path must be absolute (unix:///path, three slashes), not on host "run"`},
		// The password is never quoted, even when it is what broke the URL.
		{"password with /", "redis://app:hunter2/x@h:6379", `"redis://app:xxxxx@h:6379" cannot be parsed`},
		{"password with / and digits", "redis://app:6379/hunter2@h", `"redis://app:xxxxx@h" cannot be parsed`},
		{"password with @ and /", "redis://app:hun@ter/2@h", "must be percent-encoded (/ as %2F, @ as %40)"},
		{"password with ?", "redis://app:12?hunter2@h", `"redis://app:xxxxx@h" cannot be parsed`},
		{"password, bad port", "redis://app:hunter2@h:0", `"redis://app:xxxxx@h:0": port "0"`},
		{"password, bad scheme", "http://app:hunter2@h", `"http://app:xxxxx@h": scheme "http"`},
		{"password, bad database", "redis://app:hunter2@h/x", `"redis://app:xxxxx@h/x": invalid database number`},
		{"password, unknown option", "redis://app:hunter2@h?x=1", "unexpected option: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseURL(tt.url)
			if err == nil {
				t.Fatalf("ParseURL(%q) = no error, want %q", tt.url, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseURL(%q) = %q, want it to contain %q", tt.url, err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "hun@ter") {
				t.Fatalf("ParseURL(%q) = %q: shows the password", tt.url, err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		{"user and password", "redis://app:hunter2@h:6379/0", "redis://app:xxxxx@h:6379/0"},
		{"password only", "redis://:hunter2@h", "redis://:xxxxx@h"},
		{"TLS, encoded password", "rediss://app:hun%40ter2@h", "rediss://app:xxxxx@h"},
		{"unix", "unix://app:hunter2@/run/redis.sock?db=1", "unix://app:xxxxx@/run/redis.sock?db=1"},
		{"user only", "redis://app@h:6379", "redis://app@h:6379"},
		{"no credentials", "redis://h:6379/2", "redis://h:6379/2"},
		{"query kept", "redis://h?dial_timeout=1s", "redis://h?dial_timeout=1s"},
		{"password with /", "redis://app:hunter2/x@h:6379", "redis://app:xxxxx@h:6379"},
		{"password with digits and /", "redis://app:6379/hunter2@h", "redis://app:xxxxx@h"},
		{"password with @", "redis://app:hun@ter2@h", "redis://app:xxxxx@h"},
		{"password with #", "redis://app:1#hunter2@h", "redis://app:xxxxx@h"},
		{"password with ?", "redis://app:1?hunter2@h", "redis://app:xxxxx@h"},
		{"no slashes", "redis:app:hunter2@h", "xxxxx@h"},
		{"not a URL", "not a url", "not a url"},
		{"not a URL, with @", "%zz://app:hunter2@h", "%zz://app:xxxxx@h"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.url); got != tt.want {
				t.Fatalf("Redact(%q) = %q, want %q", tt.url, got, tt.want)
			}
		})
	}
}

// checkRedacted fails unless out, the redaction of in, has nothing but "xxxxx" after the
// first ':' of the part between "://" and the last '@' — where a password would be.
func checkRedacted(t *testing.T, in, out string) {
	t.Helper()
	at := strings.LastIndex(out, "@")
	if at < 0 {
		return
	}
	_, userinfo, ok := strings.Cut(out[:at], "://")
	if !ok {
		userinfo = out[:at]
	}
	if _, pass, ok := strings.Cut(userinfo, ":"); ok && pass != redacted {
		t.Fatalf("Redact(%q) = %q: password part %q, want %q", in, out, pass, redacted)
	}
}

// FuzzRedact builds "redis://user:pass@rest" from its parts and checks that neither Redact
// nor ParseURL's errors show the password, whatever the parts hold; and that Redact leaves
// nothing but "xxxxx" where a password would be, in any string.
func FuzzRedact(f *testing.F) {
	f.Add("app", "hunter2", "h:6379/0")
	f.Add("", "hunter2", "h")
	f.Add("app", "hun/ter2", "h:6379")
	f.Add("app", "6379/hunter2", "h")
	f.Add("app", "hun@ter2", "h")
	f.Add("app", "1?hunter2", "h")
	f.Add("app", "1#hunter2", "h/x")
	f.Add("a%zz", "hunter2", "[::1]:6379")
	f.Add("app", "hunter2", "/run/redis.sock?db=1")
	f.Fuzz(func(t *testing.T, user, pass, rest string) {
		for _, s := range []string{user, pass, rest, user + ":" + pass + "@" + rest} {
			checkRedacted(t, s, Redact(s))
		}
		if strings.ContainsAny(user, ":@/?#") || strings.Contains(rest, "@") {
			return // then which part is the password is a matter of reading
		}
		s := "redis://" + user + ":" + pass + "@" + rest
		out := Redact(s)
		checkRedacted(t, s, out)
		if !strings.Contains(out, "@") {
			t.Fatalf("Redact(%q) = %q: the user part is gone, so the password may be elsewhere", s, out)
		}
		_, err := ParseURL(s)
		if err == nil || len(pass) < 6 {
			return // a short password may show up by coincidence
		}
		// Outside the redacted URL, a message may quote what came from rest (a path, an
		// option), which may hold the password's text by coincidence.
		msg := strings.ReplaceAll(err.Error(), strconv.Quote(Redact(s)), "")
		unescaped, _ := url.PathUnescape(rest)
		from := strings.Join([]string{rest, unescaped, strconv.Quote(rest), strconv.Quote(unescaped), urlForms}, " ")
		if strings.Contains(msg, pass) && !strings.Contains(from, pass) {
			t.Fatalf("ParseURL(%q) = %q: shows the password", s, err)
		}
	})
}
