package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"teal.dev/teal"
)

// events streams the controller's live events as Server-Sent Events until the client goes
// or the server closes. Each event is "id:", "event: <kind>" and "data: <json>"; a comment
// line every Heartbeat keeps idle streams visibly alive.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	ch, unsubscribe := s.Controller.Subscribe()
	defer unsubscribe()

	rc := http.NewResponseController(w)
	// A stream outlives any write timeout the http.Server has; not every writer supports it.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx would buffer the stream otherwise
	w.WriteHeader(http.StatusOK)
	// The first comment tells the client it is subscribed: events from now on reach it.
	if _, err := io.WriteString(w, ": subscribed\n\n"); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}

	beat := time.NewTicker(s.heartbeat())
	defer beat.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-beat.C:
			_, err = io.WriteString(w, ": heartbeat\n\n")
		case ev := <-ch:
			err = writeEvent(w, ev)
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			s.log().Debug("event stream ended", "err", err)
			return
		}
	}
}

func (s *Server) heartbeat() time.Duration {
	if s.Heartbeat > 0 {
		return s.Heartbeat
	}
	return DefaultHeartbeat
}

// writeEvent writes one SSE message. JSON holds no raw newlines, so data is one line.
func writeEvent(w io.Writer, ev *teal.Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	kind := strings.NewReplacer("\r", " ", "\n", " ").Replace(ev.Kind)
	_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.ID, kind, data)
	return err
}

// logs answers an instance's output file: all of it, or its last ?tail=N lines, then with
// ?follow=1 whatever is appended until the client goes.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	if err := s.streamLog(w, r); err != nil {
		s.writeError(w, r, err)
	}
}

// streamLog returns an error only before anything is written.
func (s *Server) streamLog(w http.ResponseWriter, r *http.Request) error {
	if s.Logs == nil && s.LogStreams == nil {
		return httpError(http.StatusNotImplemented, "", "this server keeps no instance logs")
	}
	col, err := teal.ParseColor(r.PathValue("color"))
	if err != nil {
		return httpError(http.StatusBadRequest, "", "%v", err)
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 {
		return httpError(http.StatusBadRequest, "", "instance %q: want an index, 0 or more", r.PathValue("n"))
	}
	q := r.URL.Query()
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	tail := -1
	if v := q.Get("tail"); v != "" {
		if tail, err = strconv.Atoi(v); err != nil || tail < 0 {
			return httpError(http.StatusBadRequest, "", "tail %q: want a number of lines, 0 or more", v)
		}
	}

	if s.LogStreams != nil {
		return s.copyLogStream(w, r, col, n, tail, follow)
	}
	path, err := s.Logs.LogFile(col, n)
	if err != nil {
		return fmt.Errorf("log of %s/%d: %w", col, n, err)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return httpError(http.StatusNotFound, "", "%s/%d has no output yet", col, n)
	}
	if err != nil {
		return fmt.Errorf("open log of %s/%d: %w", col, n, err)
	}
	t := &logTail{f: f, path: path}
	defer func() { _ = t.f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat log of %s/%d: %w", col, n, err)
	}
	if tail >= 0 {
		if t.off, err = tailOffset(f, fi.Size(), tail); err != nil {
			return fmt.Errorf("read log of %s/%d: %w", col, n, err)
		}
	}

	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if follow {
		_ = rc.SetWriteDeadline(time.Time{})
	}
	if err := t.copy(w); err != nil || !follow {
		return nil
	}
	if err := rc.Flush(); err != nil {
		return nil
	}

	poll := time.NewTicker(s.logPoll())
	defer poll.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-s.done:
			return nil
		case <-poll.C:
		}
		// The provider may start a new file when an instance restarts: follow the new one.
		if p, err := s.Logs.LogFile(col, n); err == nil {
			t.path = p
		}
		if err := t.copy(w); err != nil {
			return nil
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}

// copyLogStream answers an instance's output from s.LogStreams, flushing each piece as it
// comes when following.
func (s *Server) copyLogStream(w http.ResponseWriter, r *http.Request, col teal.Color, n, tail int, follow bool) error {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.done: // the server shuts down: end followed streams
			cancel()
		case <-ctx.Done():
		}
	}()
	rc, err := s.LogStreams.LogStream(ctx, col, n, tail, follow)
	if err != nil {
		return fmt.Errorf("log of %s/%d: %w", col, n, err)
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc2 := http.NewResponseController(w)
	if follow {
		_ = rc2.SetWriteDeadline(time.Time{})
	}
	buf := make([]byte, 32<<10)
	for {
		k, err := rc.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return nil
			}
			if follow {
				_ = rc2.Flush()
			}
		}
		if err != nil {
			return nil // the stream ended (or the client went): the response simply ends
		}
	}
}

func (s *Server) logPoll() time.Duration {
	if s.LogPoll > 0 {
		return s.LogPoll
	}
	return DefaultLogPoll
}

// logTail copies a growing file, coping with truncation and replacement.
type logTail struct {
	f    *os.File
	off  int64
	path string
}

// copy writes what the file holds past off. When the file was truncated it starts over;
// when another file now sits at path it finishes the old one, then switches.
func (t *logTail) copy(w io.Writer) error {
	fi, err := t.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < t.off {
		t.off = 0
	}
	if err := t.copyFrom(w); err != nil {
		return err
	}
	pfi, err := os.Stat(t.path)
	if err != nil || os.SameFile(fi, pfi) {
		return nil
	}
	nf, err := os.Open(t.path)
	if err != nil {
		return nil // it went again; the old file is still ours
	}
	_ = t.f.Close()
	t.f, t.off = nf, 0
	return t.copyFrom(w)
}

func (t *logTail) copyFrom(w io.Writer) error {
	n, err := io.Copy(w, io.NewSectionReader(t.f, t.off, 1<<62))
	t.off += n
	return err
}

// tailOffset returns the offset of the start of the last n lines of the first size bytes of
// r. A final newline ends the last line rather than starting an empty one.
func tailOffset(r io.ReaderAt, size int64, n int) (int64, error) {
	if n == 0 {
		return size, nil
	}
	buf := make([]byte, 8192)
	end := size
	found := 0
	for end > 0 {
		start := max(0, end-int64(len(buf)))
		chunk := buf[:end-start]
		if _, err := r.ReadAt(chunk, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			pos := start + int64(i)
			if chunk[i] != '\n' || pos == size-1 {
				continue
			}
			found++
			if found == n {
				return pos + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}
