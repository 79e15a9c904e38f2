package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to a pixery-engine server.
type Client struct {
	base  *url.URL
	err   error
	token string
	// HTTP sends the requests; its Timeout must be zero for Events, which
	// streams for as long as a job runs.
	HTTP *http.Client
	// Retry is the pause between reconnections of Events, doubling to
	// MaxRetry; MaxReconnects bounds consecutive failed reconnections.
	Retry, MaxRetry time.Duration
	MaxReconnects   int
}

// NewClient returns a client of the server at baseURL ("http://127.0.0.1:8000")
// that sends token, when not empty, as a bearer token. A malformed baseURL
// makes every call fail with the parse error.
func NewClient(baseURL, token string) *Client {
	c := &Client{token: token, HTTP: &http.Client{}, Retry: 250 * time.Millisecond, MaxRetry: 5 * time.Second, MaxReconnects: 20}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err == nil && (u.Scheme != "http" && u.Scheme != "https" || u.Host == "") {
		err = errors.New("want http://host:port or https://host:port")
	}
	if err != nil {
		c.err = fmt.Errorf("pixery client: base URL %q: %w", baseURL, err)
	}
	c.base = u
	return c
}

// StatusError is an error answer of the server.
type StatusError struct {
	StatusCode int
	// Message is the server's error text; Field names the request field it
	// is about, when it is about one.
	Message string
	Field   string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("pixery-engine: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// FieldError returns the error as a *FieldError when it names a field.
func (e *StatusError) FieldError() *FieldError {
	if e.Field == "" {
		return nil
	}
	return &FieldError{Field: e.Field, Message: strings.TrimPrefix(e.Message, e.Field+": ")}
}

func (c *Client) newRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	if c.err != nil {
		return nil, c.err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("pixery client: encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, rd)
	if err != nil {
		return nil, fmt.Errorf("pixery client: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("pixery client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readStatusError(resp)
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("pixery client: %s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func readStatusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &StatusError{StatusCode: resp.StatusCode}
	var er ErrorResponse
	if json.Unmarshal(b, &er) == nil && er.Error != "" {
		e.Message, e.Field = er.Error, er.Field
	} else {
		e.Message = strings.TrimSpace(string(b))
	}
	return e
}

// Health returns the engine's state.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var h Health
	return &h, c.do(ctx, http.MethodGet, "/v1/health", nil, &h)
}

// Models lists the registry with each model's state.
func (c *Client) Models(ctx context.Context) ([]Model, error) {
	var l ModelList
	return l.Models, c.do(ctx, http.MethodGet, "/v1/models", nil, &l)
}

// DownloadModel starts downloading a model; its progress shows in Models.
func (c *Client) DownloadModel(ctx context.Context, id string) (*Model, error) {
	var m Model
	return &m, c.do(ctx, http.MethodPost, "/v1/models/"+url.PathEscape(id)+"/download", nil, &m)
}

// LoRAs lists the LoRA files on the engine's host.
func (c *Client) LoRAs(ctx context.Context) ([]FileInfo, error) {
	var l FileList
	return l.Files, c.do(ctx, http.MethodGet, "/v1/loras", nil, &l)
}

// IPAdapters lists the IP-Adapter files on the engine's host.
func (c *Client) IPAdapters(ctx context.Context) ([]FileInfo, error) {
	var l FileList
	return l.Files, c.do(ctx, http.MethodGet, "/v1/ip-adapters", nil, &l)
}

// Submit queues a job.
func (c *Client) Submit(ctx context.Context, req *JobRequest) (*Submitted, error) {
	var s Submitted
	return &s, c.do(ctx, http.MethodPost, "/v1/jobs", req, &s)
}

// Job returns a job's state.
func (c *Client) Job(ctx context.Context, id string) (*Job, error) {
	var j Job
	return &j, c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, &j)
}

// Cancel cancels a queued or running job and returns its state.
func (c *Client) Cancel(ctx context.Context, id string) (*Job, error) {
	var j Job
	return &j, c.do(ctx, http.MethodDelete, "/v1/jobs/"+url.PathEscape(id), nil, &j)
}

// Image returns image k (from 0) of a finished job: a PNG with metadata.
func (c *Client) Image(ctx context.Context, id string, k int) ([]byte, error) {
	path := "/v1/jobs/" + url.PathEscape(id) + "/images/" + strconv.Itoa(k)
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("pixery client: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readStatusError(resp)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("pixery client: GET %s: %w", path, err)
	}
	return b, nil
}

// ErrStop, returned by an Events callback, ends Events without an error.
var ErrStop = errors.New("stop")

// Events streams a job's events to fn, in order and each once, until the
// job's final event (done, error, cancelled), ctx ends, or fn returns an
// error (ErrStop ends quietly). A dropped connection is reopened with
// Last-Event-ID, so events are neither lost nor repeated; an error answer
// of the server (such as 404 for an unknown job) ends it at once.
func (c *Client) Events(ctx context.Context, id string, fn func(Event) error) error {
	var (
		last    int64
		fails   int
		backoff = c.Retry
	)
	path := "/v1/jobs/" + url.PathEscape(id) + "/events"
	for {
		progressed, final, err := c.streamOnce(ctx, path, &last, fn)
		switch {
		case errors.Is(err, ErrStop):
			return nil
		case final:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		}
		var (
			se *StatusError
			fe fatalError
		)
		switch {
		case errors.As(err, &se):
			return err
		case errors.As(err, &fe):
			return fe.err
		}
		if progressed {
			fails, backoff = 0, c.Retry
		}
		fails++
		if fails > c.MaxReconnects {
			return fmt.Errorf("pixery client: events of job %s: gave up after %d reconnections: %w", id, c.MaxReconnects, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, c.MaxRetry)
	}
}

// fatalError wraps an error that reconnecting cannot cure: the callback's
// own, a malformed event, a bad base URL.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }

// streamOnce reads one SSE connection. progressed reports whether any event
// arrived; final whether the job's final event was delivered.
func (c *Client) streamOnce(ctx context.Context, path string, last *int64, fn func(Event) error) (progressed, final bool, err error) {
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return false, false, fatalError{err}
	}
	req.Header.Set("Accept", "text/event-stream")
	if *last > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(*last, 10))
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return false, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, false, readStatusError(resp)
	}
	err = ReadSSE(resp.Body, func(m SSEMessage) error {
		if m.Data == "" {
			return nil
		}
		var ev Event
		if err := json.Unmarshal([]byte(m.Data), &ev); err != nil {
			return fatalError{fmt.Errorf("pixery client: event %q: %w", m.ID, err)}
		}
		if m.ID != "" {
			if id, err := strconv.ParseInt(m.ID, 10, 64); err == nil {
				ev.ID = id
			}
		}
		if ev.ID <= *last {
			return nil // a repeat after reconnecting
		}
		*last = ev.ID
		progressed = true
		if err := fn(ev); err != nil {
			if errors.Is(err, ErrStop) {
				return err
			}
			return fatalError{err}
		}
		if ev.Type.Final() {
			final = true
			return io.EOF
		}
		return nil
	})
	if errors.Is(err, io.EOF) && final {
		err = nil
	}
	if err == nil && !final {
		err = io.ErrUnexpectedEOF // the server closed the stream early
	}
	return progressed, final, err
}

// SSEMessage is one Server-Sent Events message.
type SSEMessage struct {
	ID    string
	Event string
	Data  string
}

// maxSSELine bounds one line of an event stream (a preview JPEG in base64
// is well under it).
const maxSSELine = 8 << 20

// ReadSSE parses a text/event-stream, calling fn for each message, until the
// stream ends (nil) or fn returns an error (returned as it is). Comments
// (keep-alives) are skipped.
func ReadSSE(r io.Reader, fn func(SSEMessage) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxSSELine)
	var (
		m       SSEMessage
		data    []string
		hasData bool
	)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if hasData || m.Event != "" {
				m.Data = strings.Join(data, "\n")
				if err := fn(m); err != nil {
					return err
				}
			}
			m, data, hasData = SSEMessage{}, nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			m.ID = value
		case "event":
			m.Event = value
		case "data":
			data, hasData = append(data, value), true
		}
	}
	return sc.Err()
}
