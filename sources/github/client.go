package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	gh "github.com/google/go-github/v88/github"
)

// Errors a Client returns for GitHub's answers the source acts on; test
// with errors.Is. Every error of a call that GitHub answered describes
// itself to the scaler (providers.Classify, through Classification).
var (
	ErrNotFound = errors.New("github: not found")
	// ErrConflict: a runner of that name exists already (another
	// reconciler made it). Source.Create takes it as the create done: the
	// plan converges by name.
	ErrConflict = errors.New("github: a runner of that name exists")
	// ErrBusy: GitHub refused to remove a runner that runs a job (422).
	ErrBusy = errors.New("github: the runner runs a job")
)

// APIError is a call GitHub answered with an error status, or that got no
// answer (Status 0).
type APIError struct {
	Op         string
	Status     int
	RetryAfter time.Duration // the server's hint, 0 for none
	Err        error
}

func (e *APIError) Error() string { return "github " + e.Op + ": " + e.Err.Error() }
func (e *APIError) Unwrap() error { return e.Err }

// Classification describes the failure as the scaler classifies every
// failed action (providers.Classified): whether trying again may succeed,
// the server's hint, and a short reason in the providers' words.
func (e *APIError) Classification() (retryable bool, after time.Duration, reason string) {
	switch s := e.Status; {
	case errors.Is(e.Err, ErrConflict):
		return false, 0, "conflict"
	case errors.Is(e.Err, ErrBusy):
		return false, 0, "busy"
	case errors.Is(e.Err, ErrNotFound):
		return false, 0, "not_found"
	case s == http.StatusTooManyRequests || s == http.StatusForbidden && e.RetryAfter > 0:
		return true, e.RetryAfter, "throttled"
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		return false, 0, "auth"
	case s == http.StatusUnprocessableEntity || s == http.StatusBadRequest:
		return false, 0, "bad_request"
	case s >= 500:
		return true, e.RetryAfter, "server_error"
	case s == 0:
		return true, 0, "network"
	}
	return false, 0, "api_error"
}

// Runner is a self-hosted runner as the autoscaler reads it.
type Runner struct {
	ID     int64
	Name   string
	Online bool
	Busy   bool
	Labels []string // lowercased
}

// API is what a Source and Jobs ask of GitHub: the Client, or a test's
// stand-in.
type API interface {
	Job(ctx context.Context, repo string, id int64) (Job, error)
	QueuedJobs(ctx context.Context, repo string, maxRuns int) ([]Job, error)
	Runners(ctx context.Context) ([]Runner, error)
	RemoveRunner(ctx context.Context, id int64) error
	JITConfig(ctx context.Context, name string, labels []string) (string, error)
}

// Options configures a Client.
type Options struct {
	// BaseURL is the REST API's base, https://api.github.com by default
	// (GitHub Enterprise Server: https://host/api/v3).
	BaseURL string
	// Org owns the runners (org-level runners); or Repo, owner/name, for
	// repository-level ones. Exactly one is set.
	Org, Repo string
	// RunnerGroupID is the runner group new runners join (1, Default, when
	// 0). Org-level runners only.
	RunnerGroupID int64
	// WorkFolder is the runners' work folder, "_work" when empty.
	WorkFolder string
	// Token, when set, is a fine-grained or classic token sent as bearer.
	Token string
	// HTTPClient carries the authentication (a token, or a GitHub App
	// installation's transport); it should have no timeout of its own.
	HTTPClient *http.Client
	// MaxRunnerPages bounds the runner listing, in pages of 100.
	MaxRunnerPages int
	// Observe, when set, is told each call's operation and HTTP status (0
	// when no answer came).
	Observe func(op string, status int)
	// ObserveRateLimit, when set, is told the budget each answer reports.
	ObserveRateLimit func(remaining, limit int, reset time.Time)
	UserAgent        string
}

// Client is GitHub's REST API for the calls the source makes, on
// go-github.
type Client struct {
	gh  *gh.Client
	opt Options

	mu        sync.Mutex
	remaining int
	limit     int
	reset     time.Time
	blocked   time.Time // a secondary limit's retry-after
}

// NewClient returns a client for opt.
func NewClient(opt Options) (*Client, error) {
	if (opt.Org == "") == (opt.Repo == "") {
		return nil, errors.New("github: set exactly one of org and repo")
	}
	if opt.Repo != "" && !validRepo(opt.Repo) {
		return nil, fmt.Errorf("github: repo %q: want owner/name", opt.Repo)
	}
	if opt.RunnerGroupID <= 0 {
		opt.RunnerGroupID = 1
	}
	if opt.WorkFolder == "" {
		opt.WorkFolder = "_work"
	}
	if opt.MaxRunnerPages <= 0 {
		opt.MaxRunnerPages = 10
	}
	var with []gh.ClientOptionsFunc
	if opt.HTTPClient != nil {
		with = append(with, gh.WithHTTPClient(opt.HTTPClient))
	}
	if opt.Token != "" {
		with = append(with, gh.WithAuthToken(opt.Token))
	}
	if opt.BaseURL != "" {
		base := strings.TrimSuffix(opt.BaseURL, "/") + "/"
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("github: base URL %q: want an http(s) URL such as https://api.github.com", opt.BaseURL)
		}
		with = append(with, gh.WithURLs(&base, nil))
	}
	if opt.UserAgent != "" {
		with = append(with, gh.WithUserAgent(opt.UserAgent))
	}
	c, err := gh.NewClient(with...)
	if err != nil {
		return nil, fmt.Errorf("github: %w", err)
	}
	return &Client{gh: c, opt: opt, remaining: -1}, nil
}

// Pace is how long the scaler should leave between passes: none while the
// budget is fine; up to 10 s while a secondary limit's retry-after runs or
// under a tenth of the hourly budget is left.
func (c *Client) Pace() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Before(c.blocked) {
		return min(c.blocked.Sub(now), 10*time.Second)
	}
	if c.remaining >= 0 && c.limit > 0 && c.remaining < c.limit/10 && now.Before(c.reset) {
		return min(c.reset.Sub(now)/time.Duration(c.remaining+1), 10*time.Second)
	}
	return 0
}

// done records the answer's budget and classifies err.
func (c *Client) done(op string, resp *gh.Response, err error) error {
	if resp != nil && resp.Rate.Limit > 0 {
		c.mu.Lock()
		c.remaining, c.limit, c.reset = resp.Rate.Remaining, resp.Rate.Limit, resp.Rate.Reset.Time
		c.mu.Unlock()
		if c.opt.ObserveRateLimit != nil {
			c.opt.ObserveRateLimit(resp.Rate.Remaining, resp.Rate.Limit, resp.Rate.Reset.Time)
		}
	}
	if err == nil {
		c.observe(op, resp)
		return nil
	}
	e := &APIError{Op: op, Err: err}
	if resp != nil {
		e.Status = resp.StatusCode
	}
	var abuse *gh.AbuseRateLimitError
	var rate *gh.RateLimitError
	switch {
	case errors.As(err, &abuse):
		e.RetryAfter = abuse.GetRetryAfter()
		if e.Status == 0 || e.Status == http.StatusForbidden && e.RetryAfter == 0 {
			e.Status = http.StatusTooManyRequests
		}
		if e.RetryAfter > 0 {
			c.mu.Lock()
			c.blocked = time.Now().Add(e.RetryAfter)
			c.mu.Unlock()
		}
	case errors.As(err, &rate):
		e.Status = http.StatusTooManyRequests
		e.RetryAfter = time.Until(rate.Rate.Reset.Time)
	case e.Status == http.StatusNotFound:
		e.Err = ErrNotFound
	case e.Status == http.StatusConflict:
		e.Err = ErrConflict
	case e.Status == http.StatusUnprocessableEntity && op == opRemoveRunner:
		// GitHub's answer to removing a runner that runs a job.
		e.Err = ErrBusy
	}
	c.observe(op, resp)
	return e
}

func (c *Client) observe(op string, resp *gh.Response) {
	if c.opt.Observe != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		c.opt.Observe(op, status)
	}
}

// Job reads a workflow job.
func (c *Client) Job(ctx context.Context, repo string, id int64) (Job, error) {
	owner, name, _ := strings.Cut(repo, "/")
	w, resp, err := c.gh.Actions.GetWorkflowJobByID(ctx, owner, name, id)
	if err = c.done("get_job", resp, err); err != nil {
		return Job{}, err
	}
	return jobOf(repo, w), nil
}

// QueuedJobs lists the queued jobs of repo's newest queued runs, at most
// maxRuns of them: one call for the runs, one per run for its jobs.
func (c *Client) QueuedJobs(ctx context.Context, repo string, maxRuns int) ([]Job, error) {
	owner, name, _ := strings.Cut(repo, "/")
	runs, resp, err := c.gh.Actions.ListRepositoryWorkflowRuns(ctx, owner, name, &gh.ListWorkflowRunsOptions{
		Status: "queued", ListOptions: gh.ListOptions{PerPage: min(maxRuns, 100)}})
	if err = c.done("list_queued_runs", resp, err); err != nil {
		return nil, err
	}
	var out []Job
	for i, run := range runs.WorkflowRuns {
		if i >= maxRuns {
			break
		}
		jobs, resp, err := c.gh.Actions.ListWorkflowJobs(ctx, owner, name, run.GetID(), &gh.ListWorkflowJobsOptions{
			Filter: "latest", ListOptions: gh.ListOptions{PerPage: 100}})
		if err = c.done("list_run_jobs", resp, err); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return nil, err
		}
		for _, w := range jobs.Jobs {
			if w.GetStatus() == "queued" {
				out = append(out, jobOf(repo, w))
			}
		}
	}
	return out, nil
}

// Runners lists the org's (or repo's) self-hosted runners, at most
// MaxRunnerPages pages of 100.
func (c *Client) Runners(ctx context.Context) ([]Runner, error) {
	var out []Runner
	opt := &gh.ListRunnersOptions{ListOptions: gh.ListOptions{PerPage: 100}}
	for page := 0; page < c.opt.MaxRunnerPages; page++ {
		rs, resp, err := scoped(c,
			func(org string) (*gh.Runners, *gh.Response, error) {
				return c.gh.Actions.ListOrganizationRunners(ctx, org, opt)
			},
			func(owner, repo string) (*gh.Runners, *gh.Response, error) {
				return c.gh.Actions.ListRunners(ctx, owner, repo, opt)
			})
		if err = c.done("list_runners", resp, err); err != nil {
			return nil, err
		}
		for _, r := range rs.Runners {
			run := Runner{ID: r.GetID(), Name: r.GetName(), Online: r.GetStatus() == "online", Busy: r.GetBusy()}
			for _, l := range r.Labels {
				run.Labels = append(run.Labels, strings.ToLower(l.GetName()))
			}
			out = append(out, run)
		}
		if resp.NextPage == 0 {
			break
		}
		opt.Page = resp.NextPage
	}
	return out, nil
}

// RemoveRunner deletes a runner's registration; one already gone is fine.
func (c *Client) RemoveRunner(ctx context.Context, id int64) error {
	_, resp, err := scoped(c,
		func(org string) (struct{}, *gh.Response, error) {
			resp, err := c.gh.Actions.RemoveOrganizationRunner(ctx, org, id)
			return struct{}{}, resp, err
		},
		func(owner, repo string) (struct{}, *gh.Response, error) {
			resp, err := c.gh.Actions.RemoveRunner(ctx, owner, repo, id)
			return struct{}{}, resp, err
		})
	if err = c.done(opRemoveRunner, resp, err); errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// JITConfig registers a single-use runner named name offering labels and
// returns its encoded just-in-time configuration, a credential: it goes to
// the runner through the provider's secrets only, and is never logged.
func (c *Client) JITConfig(ctx context.Context, name string, labels []string) (string, error) {
	req := &gh.GenerateJITConfigRequest{Name: name, RunnerGroupID: c.opt.RunnerGroupID, Labels: labels, WorkFolder: gh.Ptr(c.opt.WorkFolder)}
	cfg, resp, err := scoped(c,
		func(org string) (*gh.JITRunnerConfig, *gh.Response, error) {
			return c.gh.Actions.GenerateOrgJITConfig(ctx, org, req)
		},
		func(owner, repo string) (*gh.JITRunnerConfig, *gh.Response, error) {
			return c.gh.Actions.GenerateRepoJITConfig(ctx, owner, repo, req)
		})
	if err = c.done("generate_jitconfig", resp, err); err != nil {
		return "", err
	}
	if cfg.GetEncodedJITConfig() == "" {
		return "", errors.New("github generate_jitconfig: no encoded_jit_config in the answer")
	}
	return cfg.GetEncodedJITConfig(), nil
}

const opRemoveRunner = "remove_runner"

// scoped makes the call on the runners' owner: the organization's when
// they are org-level, else the repository's.
func scoped[T any](c *Client, org func(org string) (T, *gh.Response, error), repo func(owner, name string) (T, *gh.Response, error)) (T, *gh.Response, error) {
	if c.opt.Org != "" {
		return org(c.opt.Org)
	}
	owner, name, _ := strings.Cut(c.opt.Repo, "/")
	return repo(owner, name)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
