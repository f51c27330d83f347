package sampleapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// MaxNoteBytes bounds the note of an order (the body of POST and PUT /orders).
const MaxNoteBytes = 64 << 10

// Order is one row of the orders table, as GET and PUT /orders/{id} answer it.
type Order struct {
	ID      int64     `json:"id"`
	Note    *string   `json:"note"`    // null when the order was written without a body
	Version string    `json:"version"` // the version of the app that inserted it
	Created time.Time `json:"created_at"`
}

// orderColumns are the columns an Order is scanned from, in its field order.
const orderColumns = "id, note, coalesce(version, ''), coalesce(created_at, 'epoch')"

func (a *App) createOrder(w http.ResponseWriter, r *http.Request) {
	note, ok := a.note(w, r)
	if !ok {
		return
	}
	var id int64
	err := a.retry(r.Context(), func() error {
		return a.DB.QueryRow(r.Context(), "INSERT INTO orders (note, version) VALUES ($1, $2) RETURNING id", note, a.Version).Scan(&id)
	})
	if err != nil {
		dbError(w, "insert order", err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": id, "version": a.Version})
}

func (a *App) countOrders(w http.ResponseWriter, r *http.Request) {
	if a.DB == nil {
		http.Error(w, "no database", http.StatusServiceUnavailable)
		return
	}
	var n int64
	err := a.retry(r.Context(), func() error {
		return a.DB.QueryRow(r.Context(), "SELECT count(*) FROM orders").Scan(&n)
	})
	if err != nil {
		dbError(w, "count orders", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": n})
}

// order serves GET and PUT /orders/{id}.
func (a *App) order(w http.ResponseWriter, r *http.Request, rawID string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut:
	default:
		w.Header().Set("Allow", "GET, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	id, err := strconv.ParseInt(rawID, 10, 64)
	if err != nil || id < 1 {
		http.Error(w, fmt.Sprintf("order id %q: want a positive whole number", rawID), http.StatusBadRequest)
		return
	}
	var (
		note  *string
		query = "SELECT " + orderColumns + " FROM orders WHERE id = $1"
		args  = []any{id}
	)
	if r.Method == http.MethodPut {
		var ok bool
		if note, ok = a.note(w, r); !ok {
			return
		}
		query = "UPDATE orders SET note = $2 WHERE id = $1 RETURNING " + orderColumns
		args = append(args, note)
	} else if a.DB == nil {
		http.Error(w, "no database", http.StatusServiceUnavailable)
		return
	}
	var o Order
	err = a.retry(r.Context(), func() error {
		return a.DB.QueryRow(r.Context(), query, args...).Scan(&o.ID, &o.Note, &o.Version, &o.Created)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		http.Error(w, fmt.Sprintf("no order %d", id), http.StatusNotFound)
	case err != nil:
		dbError(w, "order "+rawID, err)
	default:
		writeJSON(w, http.StatusOK, o)
	}
}

// note reads the note of a write from the body: nil for an empty body. It answers the
// request itself and returns false when there is no database or the body is unusable.
func (a *App) note(w http.ResponseWriter, r *http.Request) (*string, bool) {
	if a.DB == nil {
		http.Error(w, "no database", http.StatusServiceUnavailable)
		return nil, false
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxNoteBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("note over %d bytes", MaxNoteBytes), http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		}
		return nil, false
	}
	if len(b) == 0 {
		return nil, true
	}
	s := string(b)
	return &s, true
}

// retry runs f, and once more if it failed because its connection had been closed under it.
// teal's database switchover terminates every session of the old colour's role; when that
// colour takes traffic again (a rollback), its pool still holds those dead connections, so
// they are all dropped and f runs on a new one. Each f is one autocommit statement: a
// terminated session rolls its statement back, so the retry does not apply it twice. (Only a
// server dying between a commit and its answer could leave a first, unacknowledged row.)
func (a *App) retry(ctx context.Context, f func() error) error {
	err := f()
	if err == nil || !ConnectionLost(err) || ctx.Err() != nil {
		return err
	}
	a.DB.Reset()
	return f()
}

// ConnectionLost reports whether err means the database connection was closed under the
// statement (the session was terminated, the server went away), so that the statement can
// run again on a new connection.
func ConnectionLost(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", // admin_shutdown: pg_terminate_backend, a fast shutdown
			"57P02", // crash_shutdown
			"57P05": // idle_session_timeout
			return true
		}
		return false
	}
	return pgconn.SafeToRetry(err) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}

// dbError answers a failed statement with 503: the database refused or could not be reached,
// which is what a client retries later (a write during a switchover's freeze, for one).
func dbError(w http.ResponseWriter, what string, err error) {
	http.Error(w, fmt.Sprintf("database: %s: %v", what, err), http.StatusServiceUnavailable)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
