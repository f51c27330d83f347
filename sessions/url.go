package sessions

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// urlForms is what a valid store URL looks like, for error messages.
const urlForms = "redis://[user:password@]host:port[/db], rediss://… (TLS) or unix://[user:password@]/path/to/socket[?db=N]"

// redacted replaces a password in the URLs Redact returns; it is what net/url uses too.
const redacted = "xxxxx"

// ParseURL parses the URL of a Redis server — redis://[user:password@]host:port[/db],
// rediss:// for TLS, unix://[user:password@]/path/to/socket[?db=N], plus go-redis's query
// options (dial_timeout=, protocol=, …) — into go-redis client options.
//
// Its errors quote the URL with the password redacted, never the URL as given: they end up
// in logs and release events.
func ParseURL(s string) (*redis.Options, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("redis URL is empty: want %s", urlForms)
	}
	u, err := url.Parse(s)
	if (err != nil && strings.Contains(s, "@")) || (err == nil && strayAt(u)) {
		// A password with an unencoded / ? # or @ is the usual cause, and then the pieces
		// url.Parse or go-redis would quote (a port, a path) are pieces of the password:
		// never show them.
		return nil, fmt.Errorf("redis URL %q cannot be parsed: want %s; the characters / ? # @ : %% in a user or password must be percent-encoded (/ as %%2F, @ as %%40)",
			Redact(s), urlForms)
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // ue.Error() repeats the whole URL
		}
		return nil, fmt.Errorf("redis URL %q: %w; want %s", Redact(s), err, urlForms)
	}
	switch u.Scheme {
	case "redis", "rediss":
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("redis URL %q: port %q is not between 1 and 65535", Redact(s), p)
			}
		}
		if u.Opaque != "" {
			return nil, fmt.Errorf("redis URL %q: no // after %s:; want %s", Redact(s), u.Scheme, urlForms)
		}
	case "unix":
		if u.Host != "" {
			return nil, fmt.Errorf("redis URL %q: the socket path must be absolute (unix:///path, three slashes), not on host %q", Redact(s), u.Host)
		}
	case "":
		return nil, fmt.Errorf("redis URL %q has no scheme: want %s", Redact(s), urlForms)
	default:
		return nil, fmt.Errorf("redis URL %q: scheme %q is not redis, rediss or unix: want %s", Redact(s), u.Scheme, urlForms)
	}
	o, err := redis.ParseURL(s)
	if err != nil {
		// go-redis's own messages name the option or the path, never the password (its
		// url.Parse cannot fail here: ours passed).
		return nil, fmt.Errorf("redis URL %q: %s", Redact(s), strings.TrimPrefix(err.Error(), "redis: "))
	}
	if o.DB < 0 {
		return nil, fmt.Errorf("redis URL %q: database %d is negative: want 0 or more", Redact(s), o.DB)
	}
	return o, nil
}

// Redact returns the URL s with its password, if any, replaced by "xxxxx", so that it can be
// logged. It also redacts what it cannot parse: everything between the first ':' of the user
// part and the last '@' of the URL, a password with unencoded reserved characters included.
// Query parameters are kept as they are: go-redis takes no credentials there.
func Redact(s string) string {
	// net/url splits the user part off at the last '@' before the first '/', '?' or '#'. A
	// password with one of those unencoded moves the split, so the password would show in the
	// host or path: trust net/url only when no '@' is left outside the user part.
	if u, err := url.Parse(s); err == nil && !strayAt(u) {
		if _, ok := u.User.Password(); !ok {
			return s // as written: nothing to hide, and re-encoding would change it
		}
		return u.Redacted()
	}
	return redactRaw(s)
}

// strayAt reports whether u has an '@' outside its user part ("redis:u:p@h" has one in its
// opaque part): then net/url's split between user part and the rest is not to be trusted.
func strayAt(u *url.URL) bool {
	return strings.Contains(u.Opaque+u.Host+u.Path+u.RawPath+u.RawQuery+u.Fragment, "@")
}

// redactRaw redacts without parsing: the user part runs from "://" (or the start, without
// one) to the last '@' of the string, and the password from its first ':'. It over-redacts
// rather than under-redacts: an '@' in a path or query makes more of the string disappear,
// never less.
func redactRaw(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	scheme, userinfo, ok := strings.Cut(s[:at], "://")
	if !ok {
		userinfo = s[:at]
	}
	user, _, hasPass := strings.Cut(userinfo, ":")
	if !hasPass {
		return s
	}
	if !ok {
		// "redis:user:pass@host" and the like: the scheme may be what precedes the first
		// ':', so nothing before the '@' is safe to keep.
		return redacted + s[at:]
	}
	return scheme + "://" + user + ":" + redacted + s[at:]
}
