package bitbucket

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/internal/logsafe"
	"github.com/agentscaler/agentscaler/internal/retry"
)

// DefaultURL is Bitbucket Cloud's API.
const DefaultURL = "https://api.bitbucket.org"

// Endpoints, as metrics and errors name them: never a URL with ids.
const (
	EndpointRunners     = "runners"
	EndpointRunner      = "runner"
	EndpointRunnerState = "runner_state"
	EndpointToken       = "token"
)

// Location is where runners live: a workspace, or one of its repositories.
// Both are UUIDs, with or without braces.
type Location struct {
	Workspace  string
	Repository string // empty for workspace runners
}

// path is the runners collection of the location.
func (l Location) path() string {
	if l.Repository == "" {
		return "/internal/workspaces/" + url.PathEscape(Braced(l.Workspace)) + "/pipelines-config/runners"
	}
	return "/internal/repositories/" + url.PathEscape(Braced(l.Workspace)) + "/" + url.PathEscape(Braced(l.Repository)) + "/pipelines-config/runners"
}

// Braced writes a UUID the way Bitbucket does, in braces.
func Braced(uuid string) string {
	if uuid == "" || strings.HasPrefix(uuid, "{") {
		return uuid
	}
	return "{" + uuid + "}"
}

// Options configures a Client.
type Options struct {
	URL         string       // DefaultURL when empty
	HTTP        *http.Client // http.DefaultClient when nil
	CallTimeout time.Duration
	MaxRetries  int // retries of a throttled (429), timed out or failed (5xx) call; 0 is 4
	// MaxPages bounds one listing; 0 is 10 pages of 100 (a workspace holds
	// at most 100 runners).
	MaxPages int
	// Observe, when set, is told of every call: its endpoint and HTTP
	// status (0 when no answer came).
	Observe   func(endpoint string, status int)
	Logger    *slog.Logger
	UserAgent string
	// Sleep replaces the wait between retries in tests.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Client calls the runner endpoints Atlassian's runners-autoscaler uses.
// It is safe for concurrent use.
type Client struct {
	base    *url.URL
	auth    Authorizer
	opts    Options
	retries retry.Policy
	log     *slog.Logger

	mu        sync.Mutex
	throttled time.Time // until when Bitbucket asked us to wait
}

// NewClient returns a client of the API at opts.URL.
func NewClient(auth Authorizer, opts Options) (*Client, error) {
	if opts.URL == "" {
		opts.URL = DefaultURL
	}
	u, err := url.Parse(strings.TrimRight(opts.URL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("bitbucket: %q is not an http(s) URL", opts.URL)
	}
	if opts.HTTP == nil {
		opts.HTTP = http.DefaultClient
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 4
	}
	if opts.MaxPages <= 0 {
		opts.MaxPages = 10
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{base: u, auth: auth, opts: opts, log: opts.Logger}
	c.retries = retry.Policy{Retries: opts.MaxRetries, Retryable: retryable, Sleep: opts.Sleep}
	return c, nil
}

// Pace is how long to hold the next pass: what is left of the wait
// Bitbucket asked for in its last Retry-After, at most 30 s.
func (c *Client) Pace() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return min(time.Until(c.throttled), 30*time.Second)
}

// Runners lists the runners of loc, following "next" page by page.
func (c *Client) Runners(ctx context.Context, loc Location) ([]Runner, error) {
	var out []Runner
	next := c.base.String() + loc.path() + "?pagelen=100"
	for range c.opts.MaxPages {
		var p page[Runner]
		if err := c.do(ctx, http.MethodGet, EndpointRunners, next, nil, &p); err != nil {
			return nil, err
		}
		out = append(out, p.Values...)
		if p.Next == "" {
			return out, nil
		}
		n, err := url.Parse(p.Next)
		if err != nil || n.Host != c.base.Host {
			// Credentials go to Bitbucket only.
			return nil, errors.New("bitbucket: runners: the next page is not on the API host")
		}
		next = n.String()
	}
	return nil, fmt.Errorf("bitbucket: runners: more than %d pages", c.opts.MaxPages)
}

// CreateRunner registers a runner; the answer carries its OAuth client,
// the only time Bitbucket returns the secret.
func (c *Client) CreateRunner(ctx context.Context, loc Location, name string, labels []string) (Runner, error) {
	var r Runner
	in := map[string]any{"name": name, "labels": labels}
	if err := c.do(ctx, http.MethodPost, EndpointRunners, c.base.String()+loc.path(), in, &r); err != nil {
		return Runner{}, err
	}
	if r.UUID == "" || r.OAuth == nil || r.OAuth.Secret == "" {
		return Runner{}, errors.New("bitbucket: create runner: the answer carries no uuid or OAuth client")
	}
	return r, nil
}

// Runner reads one runner.
func (c *Client) Runner(ctx context.Context, loc Location, uuid string) (Runner, error) {
	var r Runner
	err := c.do(ctx, http.MethodGet, EndpointRunner, c.runnerURL(loc, uuid), nil, &r)
	return r, err
}

// SetRunnerStatus disables (StatusDisabled) or enables (StatusEnabled) a
// runner: a disabled runner is handed no step.
func (c *Client) SetRunnerStatus(ctx context.Context, loc Location, uuid, status string) error {
	return c.do(ctx, http.MethodPut, EndpointRunnerState, c.runnerURL(loc, uuid)+"/state", map[string]string{"status": status}, nil)
}

// DeleteRunner deletes a runner; one already gone is no error.
func (c *Client) DeleteRunner(ctx context.Context, loc Location, uuid string) error {
	err := c.do(ctx, http.MethodDelete, EndpointRunner, c.runnerURL(loc, uuid), nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}

func (c *Client) runnerURL(loc Location, uuid string) string {
	return c.base.String() + loc.path() + "/" + url.PathEscape(Braced(uuid))
}

// do makes one call, retrying what may pass (throttling, timeouts, server
// errors) with the server's Retry-After, all within the call timeout.
func (c *Client) do(ctx context.Context, method, endpoint, u string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("bitbucket: %s: %w", endpoint, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	p := c.retries
	p.OnRetry = func(attempt int, wait time.Duration, err error) {
		c.log.Debug("bitbucket call failed, retrying", "endpoint", endpoint, "attempt", attempt, "wait", wait, "error", err)
	}
	return retry.Do(ctx, p, func(ctx context.Context) error { return c.once(ctx, method, endpoint, u, body, out) })
}

func (c *Client) once(ctx context.Context, method, endpoint, u string, body []byte, out any) error {
	auth, err := c.auth.Authorization(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("bitbucket: %s: %w", endpoint, err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.opts.UserAgent != "" {
		req.Header.Set("User-Agent", c.opts.UserAgent)
	}
	resp, err := c.opts.HTTP.Do(req)
	if err != nil {
		c.observe(endpoint, 0)
		return &APIError{Endpoint: endpoint, Err: err}
	}
	defer resp.Body.Close()
	c.observe(endpoint, resp.StatusCode)
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return &APIError{Endpoint: endpoint, Err: err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := apiError(endpoint, resp, data)
		if e.RetryAfter > 0 {
			c.mu.Lock()
			c.throttled = time.Now().Add(e.RetryAfter)
			c.mu.Unlock()
		}
		return e
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("bitbucket: %s: decode answer: %w", endpoint, err)
	}
	return nil
}

func (c *Client) observe(endpoint string, status int) {
	if c.opts.Observe != nil {
		c.opts.Observe(endpoint, status)
	}
}

// APIError is a failed call: an answer outside 2xx (Status), or none (Err).
type APIError struct {
	Endpoint   string
	Status     int
	Message    string        // Bitbucket's error message, clipped
	RetryAfter time.Duration // the server's Retry-After, 0 when none
	Err        error         // the transport failure when no answer came
}

func apiError(endpoint string, resp *http.Response, body []byte) *APIError {
	e := &APIError{Endpoint: endpoint, Status: resp.StatusCode}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(resp.Header.Get("Retry-After")); err == nil {
		e.RetryAfter = max(time.Until(t), 0)
	}
	var msg struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &msg) == nil {
		e.Message = logsafe.Clip(msg.Error.Message)
	}
	return e
}

func (e *APIError) Error() string {
	if e.Err != nil {
		return "bitbucket: " + e.Endpoint + ": " + e.Err.Error()
	}
	s := fmt.Sprintf("bitbucket: %s: HTTP %d", e.Endpoint, e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return s
}

func (e *APIError) Unwrap() error { return e.Err }

// Classification says whether trying again may pass, the server's hint,
// and the reason in the words the providers use (providers.Classify).
func (e *APIError) Classification() (retryable bool, after time.Duration, reason string) {
	switch s := e.Status; {
	case e.Err != nil:
		return true, 0, "network"
	case s == http.StatusTooManyRequests:
		return true, e.RetryAfter, "throttled"
	case s == http.StatusRequestTimeout:
		return true, e.RetryAfter, "timeout"
	case s >= 500:
		return true, e.RetryAfter, "server_error"
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return false, 0, "auth"
	case s == http.StatusNotFound:
		return false, 0, "not_found"
	case s == http.StatusConflict:
		return false, 0, "conflict"
	case s == http.StatusBadRequest:
		return false, 0, "bad_request"
	}
	return false, 0, "api_error"
}

// retryable is the client's retry rule: what APIError says may pass, while
// the call's context holds.
func retryable(err error) (bool, time.Duration) {
	var e *APIError
	if !errors.As(err, &e) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false, 0
	}
	again, after, _ := e.Classification()
	return again, after
}

// IsNotFound reports whether err is Bitbucket's 404.
func IsNotFound(err error) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}
