package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"teal.dev/teal"
)

// DefaultStickyCookie is the name of the sticky-session cookie.
const DefaultStickyCookie = "teal_color"

// Sticky configures sticky sessions during weighted steps (release.sticky). Set it on the
// Router before the first Route or SetBackends: each routing table is built with the
// Sticky of that moment.
//
// While both colours have a share of production traffic and Enabled is true, a request that
// carries a valid cookie goes to the colour the cookie names; any other request is split by
// weight, and its response sets the cookie
//
//	Set-Cookie: teal_color=<colour>.<epoch>.<mac>; Path=/; HttpOnly; SameSite=Lax
//
// a session cookie (no Max-Age), where epoch is Routes.Epoch and mac is the first 16 bytes of
// HMAC-SHA256(Key, "<colour>|<epoch>"), base64url without padding. The cookie holds nothing
// per client and no per-process randomness, so every teal process with the same Key honours
// it. A cookie of another epoch (an earlier release) or with a wrong mac is ignored: the
// client is treated as new. When the cookie's colour has no healthy backend, the request is
// split by weight and the cookie is given again.
//
// With one colour taking all traffic (no split), the cookie is neither read nor set. The
// router never strips it: the backend sees it among the client's cookies.
type Sticky struct {
	// Enabled turns sticky sessions on for weighted splits. = false.
	Enabled bool
	// KeepExisting keeps existing sessions on the old colour until the split ends: a request
	// without a valid teal cookie but with any other cookie (the app's own session) goes to
	// the colour named by SetStickyOld and is given its cookie. Requests without cookies are
	// split by weight. Without SetStickyOld it has no effect. = false.
	KeepExisting bool
	// Key signs the cookies. Every teal process that serves the same site must use the same
	// key for a cookie from one to be honoured by another; a client that knows it can choose
	// its colour. Empty signs with the empty key.
	Key []byte
	// Cookie is the cookie's name. = DefaultStickyCookie.
	Cookie string
}

// cookieName is the cookie's name, DefaultStickyCookie when unset.
func (s *Sticky) cookieName() string {
	if s.Cookie == "" {
		return DefaultStickyCookie
	}
	return s.Cookie
}

// SetStickyOld names the colour that was live before the weighted split began, where
// Sticky.KeepExisting keeps existing sessions; "" clears it. The controller sets it when a
// weighted release starts (to the release's From colour) and clears it when the release
// ends. Requests that start after it returns see it.
func (r *Router) SetStickyOld(c teal.Color) error {
	if c != "" && !c.Valid() {
		return fmt.Errorf("sticky old colour %q: want blue, green or empty: %w", c, teal.ErrInvalid)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stickyOld = c
	old := r.table.Load()
	r.table.Store(r.newTable(old.routes, old.pools))
	return nil
}

// stickyTable is what a routing table needs to honour and give sticky cookies, worked out
// once per table so that a request does string comparisons, not HMACs.
type stickyTable struct {
	name         string    // cookie name
	values       [2]string // the valid cookie value of each colour for the table's epoch
	setCookie    [2]string // the Set-Cookie header that gives each colour's cookie
	keepExisting bool
	old          int // colour index existing sessions stay on; none for none
}

// newStickyTable returns the sticky part of a table for routes, or nil when stickiness does
// not apply (disabled, or no split).
func newStickyTable(s *Sticky, old teal.Color, epoch int64) *stickyTable {
	if !s.Enabled {
		return nil
	}
	st := &stickyTable{name: s.cookieName(), keepExisting: s.KeepExisting, old: colorIndex(old)}
	for i, c := range teal.Colors {
		v := stickyValue(s.Key, c, epoch)
		st.values[i] = v
		st.setCookie[i] = st.name + "=" + v + "; Path=/; HttpOnly; SameSite=Lax"
	}
	return st
}

// stickyValue returns the value of the sticky cookie that pins a client to c during the split
// of epoch, signed with key: "<colour>.<epoch>.<mac>".
func stickyValue(key []byte, c teal.Color, epoch int64) string {
	e := strconv.FormatInt(epoch, 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(string(c) + "|" + e))
	return string(c) + "." + e + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// pickSticky chooses the colour of a live request during a split with sticky sessions, and
// the Set-Cookie header to add to its response ("" for none).
func (t *table) pickSticky(req *http.Request, seq *atomic.Uint64) (int, *pool, string) {
	st := t.sticky
	v, found, others := cookieValue(req.Header["Cookie"], st.name)
	c := none
	if found {
		switch {
		case constEqual(v, st.values[blue]):
			c = blue
		case constEqual(v, st.values[green]):
			c = green
		}
	}
	if c != none && t.pools[c] != nil {
		return c, t.pools[c], ""
	}
	if c == none && st.keepExisting && st.old != none && others && t.pools[st.old] != nil {
		// An existing session, by its cookies: it stays where it was before the split.
		return st.old, t.pools[st.old], st.setCookie[st.old]
	}
	c, p := t.pickLive(seq)
	if p == nil {
		return c, nil, ""
	}
	return c, p, st.setCookie[c]
}

// cookieValue finds the cookie name in the Cookie header lines, without allocating: its
// value, whether it was there, and whether any other cookie was.
func cookieValue(lines []string, name string) (value string, found, others bool) {
	for _, line := range lines {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			k, v, _ := strings.Cut(part, "=")
			if strings.TrimSpace(k) != name {
				others = true
				continue
			}
			if !found {
				value, found = strings.Trim(strings.TrimSpace(v), `"`), true
			}
		}
	}
	return value, found, others
}

// constEqual compares a cookie with a valid value in time that depends only on the lengths,
// so that timing does not reveal how much of a forged mac was right.
func constEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	var d byte
	for i := 0; i < len(a); i++ {
		d |= a[i] ^ b[i]
	}
	return d == 0
}
