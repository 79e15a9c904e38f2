package download

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors; Download's errors wrap them so callers can tell the
// cases apart with errors.Is.
var (
	// ErrAuth: the server wants a token (401) or refused the one sent (403).
	ErrAuth = errors.New("access denied")
	// ErrNotFound: the server answered 404.
	ErrNotFound = errors.New("not found")
	// ErrChecksum: the file's SHA-256 differs from the expected one.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrDiskFull: the disk (or quota) ran out of space while writing.
	ErrDiskFull = errors.New("disk full")
	// ErrBusy: the same destination is already being downloaded by this
	// process.
	ErrBusy = errors.New("already being downloaded")
)

// HTTPError is an unexpected HTTP status.
type HTTPError struct {
	StatusCode int
	URL        string // redacted
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s answered %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
}

// retryable is implemented by errors after which resuming is worthwhile.
type retryable interface{ Retryable() bool }

// Retryable reports whether the server might answer better later.
func (e *HTTPError) Retryable() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// transferError is a connection that broke or stalled mid-download; the
// .part file keeps what arrived and a retry resumes from there.
type transferError struct{ err error }

func (e *transferError) Error() string   { return e.err.Error() }
func (e *transferError) Unwrap() error   { return e.err }
func (e *transferError) Retryable() bool { return true }

func isRetryable(err error) bool {
	var r retryable
	return errors.As(err, &r) && r.Retryable()
}
