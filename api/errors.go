package api

import (
	"errors"
	"fmt"
	"net/http"

	"teal.dev/teal"
)

// ErrUnreachable is wrapped by every Client error that means the server could not be reached
// at all (connection refused, DNS, reset before an answer).
var ErrUnreachable = errors.New("cannot reach the teal server")

// Error is what Client methods return for a non-2xx answer: the status and the server's
// {"error","hint"}. It unwraps to the teal sentinel the status stands for, so that
// errors.Is(err, teal.ErrConflict) works on either side of the wire.
type Error struct {
	Status  int
	Message string
	Hint    string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	}
	return e.Message
}

// Unwrap returns the teal sentinel of e's status, or nil.
func (e *Error) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest:
		return teal.ErrInvalid
	case http.StatusNotFound:
		return teal.ErrNotFound
	case http.StatusConflict:
		return teal.ErrConflict
	case http.StatusUnprocessableEntity:
		return teal.ErrRefused
	}
	return nil
}

// statusOf maps an error from the controller to an HTTP status.
func statusOf(err error) int {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		return ae.Status
	case errors.Is(err, teal.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, teal.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, teal.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, teal.ErrRefused):
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// hintOf returns the hint err carries, from the domain or from an API error.
func hintOf(err error) string {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Hint
	}
	return teal.HintOf(err)
}

// httpError builds an *Error for the server to answer with.
func httpError(status int, hint, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...), Hint: hint}
}
