package proxy

import (
	"net/http/httputil"
	"sync/atomic"

	"teal.dev/teal"
)

// Colour and listener indexes into the Router's counters. none is where requests that found
// no colour to go to (nothing live, no preview colour) are counted.
const (
	blue  = 0
	green = 1
	none  = 2

	live    = 0
	preview = 1
)

// colorIndex maps a colour to its index; anything else is none.
func colorIndex(c teal.Color) int {
	switch c {
	case teal.Blue:
		return blue
	case teal.Green:
		return green
	}
	return none
}

// table is one routing decision: the traffic split, the preview colour and each colour's
// backends. A table is never modified once installed; SetBackends and Route install a new one,
// so a request that loaded a table sees one consistent decision from start to end.
type table struct {
	routes teal.Routes
	pools  [2]*pool // per colour; nil when the colour has no backends

	// single is the colour index that takes all live traffic, or none when nothing is live;
	// it is meaningful only when split is nil.
	single int
	// split maps a request sequence number modulo len(split) to a colour index. It spreads
	// each colour's share evenly over every len(split) consecutive requests, so weights are
	// exact without randomness. nil unless both colours have a share.
	split   []uint8
	preview int // colour index the preview listener serves, or none
	// sticky is how sticky sessions are honoured and given; nil when they do not apply (off,
	// or no split), which is all a request checks.
	sticky *stickyTable
}

// newTable returns the table for routes and pools.
func newTable(routes teal.Routes, pools [2]*pool) *table {
	t := &table{
		routes:  routes,
		pools:   pools,
		single:  none,
		preview: colorIndex(routes.Preview),
	}
	b, g := routes.Traffic.Blue, routes.Traffic.Green
	switch {
	case b > 0 && g > 0:
		t.split = spread(b, g)
	case b > 0:
		t.single = blue
	case g > 0:
		t.single = green
	}
	return t
}

// spread returns b+g slots of which exactly g are green, evenly interleaved (Bresenham): slot
// i is green when the running green quota crosses an integer at i.
func spread(b, g int) []uint8 {
	total := b + g
	s := make([]uint8, total)
	for i := range s {
		if (i+1)*g/total > i*g/total {
			s[i] = green
		} else {
			s[i] = blue
		}
	}
	return s
}

// pickLive chooses the colour index and pool of a live request; seq is the Router's request
// sequence, used only for splits. A colour in a split with no backends falls back to the
// other colour of the split, which also has a share; a colour with all the traffic has no
// fallback, because the other colour must not receive requests after Route returned.
func (t *table) pickLive(seq *atomic.Uint64) (int, *pool) {
	if t.split == nil {
		if t.single == none {
			return none, nil
		}
		return t.single, t.pools[t.single]
	}
	c := int(t.split[seq.Add(1)%uint64(len(t.split))])
	if p := t.pools[c]; p != nil {
		return c, p
	}
	if p := t.pools[1-c]; p != nil {
		return 1 - c, p
	}
	return c, nil
}

// pickPreview chooses the colour index and pool of a preview request.
func (t *table) pickPreview() (int, *pool) {
	if t.preview == none {
		return none, nil
	}
	return t.preview, t.pools[t.preview]
}

// pool is one colour's healthy backends, chosen round-robin.
type pool struct {
	backends []*backend
	next     atomic.Uint64
}

// pick returns the index of the next backend in round-robin order.
func (p *pool) pick() int {
	if len(p.backends) == 1 {
		return 0
	}
	return int((p.next.Add(1) - 1) % uint64(len(p.backends)))
}

// backend is one instance of a colour: its connection pool, for plain requests, and the
// reverse proxies that forward the rest to it, one per listener (live, preview, endpoint),
// so that each knows whose counters a response is on.
type backend struct {
	addr    string
	conns   *connPool // nil when the Router's Transport is not its own
	proxies [3]*httputil.ReverseProxy
}
