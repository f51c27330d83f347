package proxy

import (
	"html"
	"io"
	"net/http"
	"time"
)

// maintenanceRetryAfter is the Retry-After of the maintenance page, in seconds: a release in
// mode snapshot takes as long as a dump and restore, and clients should come back soon but
// not hammer the router meanwhile.
const maintenanceRetryAfter = "5"

// Maintenance answers every production request with 503, Retry-After and a short page while on;
// requests in flight carry on. It returns when the mode is set: every request that starts
// after Maintenance(true) returns gets the page. Preview and colour endpoints are not
// affected. It is the downtime of a database switchover in mode snapshot, where the old
// colour's writes are frozen for as long as a dump, restore and migration take — too long
// to hold requests.
func (r *Router) Maintenance(on bool) {
	if r.maintenance.Swap(on) != on {
		r.logger().Info("maintenance mode", "on", on)
	}
}

// InMaintenance reports whether the maintenance page is on.
func (r *Router) InMaintenance() bool { return r.maintenance.Load() }

// serveMaintenance answers a production request with the maintenance page. It is counted as
// a 503 of colour none, like any request that found nothing to go to; it never reaches a
// backend, so it is not in flight anywhere and Drain does not wait for it.
func (r *Router) serveMaintenance(w http.ResponseWriter, req *http.Request, start time.Time) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Retry-After", maintenanceRetryAfter)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusServiceUnavailable)
	if req.Method != http.MethodHead {
		_, _ = io.WriteString(w, maintenancePage(req.Host))
	}
	r.counters[live][none].count(http.StatusServiceUnavailable)
	r.metrics.observers[live][none].Observe(time.Since(start).Seconds())
}

// maintenancePage is the page shown while in maintenance; host names the site (the request's
// Host, escaped: it is whatever the client sent).
func maintenancePage(host string) string {
	name := "this site"
	if host != "" {
		name = html.EscapeString(host)
	}
	return "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Back in a moment</title></head>\n" +
		"<body><p>teal: " + name + " is being released, back in a moment.</p></body></html>\n"
}
