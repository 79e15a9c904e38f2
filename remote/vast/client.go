// Package vast is a small client for the parts of the Vast.ai REST API that
// pixery needs to rent a GPU: search offers, create an instance, poll it,
// list and destroy instances, and manage SSH keys. The facts it follows
// (paths, bodies, states, error shapes, quirks) are collected in the team's
// reference shared/reference/vast-api.md; section numbers in comments point
// there.
package vast

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultBaseURL is Vast's API host (§1.1).
const DefaultBaseURL = "https://console.vast.ai"

// Retry says how often and how patiently a request is repeated after a
// rate limit (429), a gateway error (502/503/504) or a transport error.
// Vast sends no Retry-After header (§10), so the client backs off by itself:
// Base, then ×2 each time up to Max, with ±25 % jitter.
type Retry struct {
	Attempts int           // total tries, at least 1
	Base     time.Duration // first wait
	Max      time.Duration // longest wait
}

// DefaultRetry is used for every call but destroy.
var DefaultRetry = Retry{Attempts: 6, Base: 500 * time.Millisecond, Max: 8 * time.Second}

// DestroyRetry is used for destroy: it is what stops billing, so it keeps
// trying for a few minutes before giving up.
var DestroyRetry = Retry{Attempts: 14, Base: 500 * time.Millisecond, Max: 30 * time.Second}

// Client talks to the Vast.ai API with one API key. Its zero value is not
// usable; make one with New.
type Client struct {
	baseURL string
	key     string
	http    *http.Client
	// Retry and DestroyRetry may be changed before the client is used
	// (tests shorten them).
	Retry        Retry
	DestroyRetry Retry
	// UserAgent is sent with every request.
	UserAgent string
}

// New returns a client for the API at baseURL ("" means DefaultBaseURL)
// authenticating with key.
func New(baseURL, key string) *Client {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	return &Client{
		baseURL:      strings.TrimRight(baseURL, "/"),
		key:          strings.TrimSpace(key),
		http:         &http.Client{Timeout: 2 * time.Minute},
		Retry:        DefaultRetry,
		DestroyRetry: DestroyRetry,
		UserAgent:    "pixery",
	}
}

// String describes the client without its key, so that printing a Client
// by mistake never leaks the secret.
func (c *Client) String() string { return "vast.Client{" + c.baseURL + "}" }

// BaseURL returns the API base the client talks to.
func (c *Client) BaseURL() string { return c.baseURL }

// Errors that callers branch on; an *APIError matches them with errors.Is.
var (
	// ErrAuth: the key is missing, wrong, expired or lacks permission.
	ErrAuth = errors.New("Vast.ai rejected the API key")
	// ErrOfferGone: the offer was rented by someone else or withdrawn (§3.3).
	ErrOfferGone = errors.New("offer is no longer available")
	// ErrNotFound: no such instance (destroyed or never existed).
	ErrNotFound = errors.New("no such instance")
	// ErrRateLimited: still rate limited after all retries.
	ErrRateLimited = errors.New("rate limited by Vast.ai")
)

// APIError is an unsuccessful answer from the API.
type APIError struct {
	Op     string // what pixery was doing, e.g. "create instance from offer 123"
	Status int    // HTTP status
	Code   string // the body's "error" field, e.g. "no_such_ask"
	Msg    string // the body's "msg" (or "detail"/"message", or the plain text body)
	// NewContract is set when a failed create still made an instance (the
	// bid quirk, §3.3): that instance exists and has to be destroyed.
	NewContract int64
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "vast: %s: HTTP %d", e.Op, e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Msg != "" {
		b.WriteString(": " + e.Msg)
	}
	if e.NewContract != 0 {
		fmt.Fprintf(&b, " (instance %d was created anyway)", e.NewContract)
	}
	return b.String()
}

// Is lets errors.Is match the sentinel errors above.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrAuth:
		return isAuthFailure(e.Status, e.Msg)
	case ErrOfferGone:
		return (e.Status == http.StatusNotFound || e.Status == http.StatusGone) &&
			(e.Code == "no_such_ask" || strings.Contains(e.Msg, "no_such_ask"))
	case ErrNotFound:
		return e.Status == http.StatusNotFound && !isAuthFailure(e.Status, e.Msg) &&
			!strings.Contains(e.Msg, "no_such_ask")
	case ErrRateLimited:
		return e.Status == http.StatusTooManyRequests
	}
	return false
}

// isAuthFailure applies §10: 401 and 403 are auth failures, and so is a 404
// whose message is about the key or the session.
func isAuthFailure(status int, msg string) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		return true
	case http.StatusNotFound:
		m := strings.ToLower(msg)
		return strings.Contains(m, "user key") || strings.Contains(m, "api key") || strings.Contains(m, "session expired")
	}
	return false
}

// errorBody is the common error shape (§10) plus the variants seen.
type errorBody struct {
	Success     *bool  `json:"success"`
	Error       string `json:"error"`
	Msg         string `json:"msg"`
	Message     string `json:"message"`
	Detail      string `json:"detail"`
	NewContract int64  `json:"new_contract"`
}

func parseError(op string, status int, body []byte) *APIError {
	e := &APIError{Op: op, Status: status}
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil {
		e.Code = eb.Error
		e.NewContract = eb.NewContract
		for _, m := range []string{eb.Msg, eb.Message, eb.Detail} {
			if m != "" {
				e.Msg = m
				break
			}
		}
	} else {
		// 429 bodies are often plain text (§10).
		e.Msg = strings.TrimSpace(string(body))
	}
	if len(e.Msg) > 300 {
		e.Msg = e.Msg[:300] + "…"
	}
	if e.Msg == "" && status == http.StatusUnauthorized {
		e.Msg = "please log in or sign up" // what the CLI shows for a non-JSON 401
	}
	return e
}

// request is one API call.
type request struct {
	op       string
	method   string
	path     string     // with /api/vN prefix
	query    url.Values // optional
	body     any        // marshalled as JSON; nil sends no body
	retry    Retry
	no5xx    bool // create is not idempotent: retry only 429 (§1.3)
	okStatus func(int) bool
}

// do runs r, retrying as its policy says, and decodes a 2xx JSON answer
// into out (when out is not nil). A non-2xx answer becomes an *APIError.
func (c *Client) do(ctx context.Context, r request, out any) error {
	var payload []byte
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return fmt.Errorf("vast: %s: encode request: %w", r.op, err)
		}
		payload = b
	}
	u := c.baseURL + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	attempts := max(r.retry.Attempts, 1)
	var lastErr error
	for try := 0; try < attempts; try++ {
		if try > 0 {
			if err := sleep(ctx, backoff(r.retry, try)); err != nil {
				return fmt.Errorf("vast: %s: %w (last error: %v)", r.op, err, lastErr)
			}
		}
		status, body, err := c.send(ctx, r.method, u, payload)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("vast: %s: %w", r.op, ctx.Err())
			}
			lastErr = fmt.Errorf("vast: %s: %w", r.op, err)
			if r.no5xx {
				// The request may have reached Vast: a retry could rent twice.
				return lastErr
			}
			continue
		}
		if status >= 200 && status < 300 {
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(body, out); err != nil {
				return fmt.Errorf("vast: %s: decode answer: %w", r.op, err)
			}
			return nil
		}
		apiErr := parseError(r.op, status, body)
		lastErr = apiErr
		retryable := status == http.StatusTooManyRequests ||
			(!r.no5xx && (status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout))
		if !retryable {
			return apiErr
		}
	}
	if errors.Is(lastErr, ErrRateLimited) {
		return fmt.Errorf("%w after %d tries: %w", ErrRateLimited, attempts, lastErr)
	}
	return lastErr
}

// send makes one HTTP exchange. The key travels only in the Authorization
// header (§1.2), never in the URL, so it cannot end up in an error message.
func (c *Client) send(ctx context.Context, method, u string, payload []byte) (int, []byte, error) {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, nil, err
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.UserAgent)
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, scrubKey(err, c.key)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, scrubKey(fmt.Errorf("read answer: %w", err), c.key)
	}
	return resp.StatusCode, b, nil
}

// scrubKey makes sure an error text never carries the key, whatever the
// transport put into it.
func scrubKey(err error, key string) error {
	if key == "" || !strings.Contains(err.Error(), key) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), key, "[key]"))
}

func backoff(r Retry, try int) time.Duration {
	d := r.Base
	for i := 1; i < try && d < r.Max; i++ {
		d *= 2
	}
	if r.Max > 0 && d > r.Max {
		d = r.Max
	}
	// ±25 % jitter so that several pixery processes don't retry in step.
	j := time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
	return j
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func idPath(prefix string, id int64) string {
	return prefix + strconv.FormatInt(id, 10) + "/"
}
