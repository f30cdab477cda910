package azuredevops

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/internal/retry"
)

// API versions. Pools and agents are released at 7.1 (Azure DevOps REST
// reference, distributedtask/pools and distributedtask/agents). The pool
// jobrequests list is undocumented and resourceusage is a preview API: these
// are the versions Microsoft's generated TaskAgent clients (azure-devops-node-api)
// send for them.
const (
	apiVersion              = "7.1"
	apiVersionJobRequests   = "7.1-preview.1"
	apiVersionResourceUsage = "7.1-preview.2"
)

// Endpoint names passed to Options.Observe: fixed, short, low-cardinality.
const (
	EndpointPools         = "pools"
	EndpointJobRequests   = "jobrequests"
	EndpointAgents        = "agents"
	EndpointAgentDelete   = "agent_delete"
	EndpointAgentAdd      = "agent_add"
	EndpointResourceUsage = "resourceusage"
)

// JobRequestsCap is the most items the pool jobrequests endpoint returns in
// one answer.
//
// What is known about the endpoint (kedacore/keda#6819, #4326, #4387,
// #6894): it is undocumented and returns at most 200 requests whatever $top
// asks for; completedRequestCount=0 drops finished requests, so the 200 are
// spent on running and waiting ones. Its other form, $top=N, cannot be
// combined with completedRequestCount: it answers pages mixing running,
// waiting and finished requests, carries demands but no matchedAgents, and
// points to the next page with the header x-ms-continuationtoken, three
// cursors "{lastRunningAssignTime}|{lastQueuedRequestId}|{lastFinishedFinishTime}".
// JobRequests asks the first form and pages the second only when the first
// came back full.
const JobRequestsCap = 200

// Defaults of the paged job request list (Options.JobRequestsPageSize and
// JobRequestsMaxPages).
const (
	DefaultJobRequestsPageSize = 200
	DefaultJobRequestsMaxPages = 25
)

// continuationHeader names the header that carries the next page's cursor.
const continuationHeader = "X-Ms-Continuationtoken"

// maxContinuationToken bounds the continuation token sent back: three
// cursors (two dates and a number) fit in well under 200 bytes.
const maxContinuationToken = 1024

// maxBody bounds every response body read into memory.
const maxBody = 32 << 20

// maxErrorMessage bounds the server message kept in an APIError.
const maxErrorMessage = 1024

// scopeHint tells the operator what the credentials need when Azure DevOps
// refuses them.
const scopeHint = `the PAT needs scope "Agent Pools (Read & manage)" (vso.agentpools_manage); ` +
	`an Entra identity needs to be a user of the organization with the Administrator role on the agent pools`

// ErrPoolNotFound is returned (wrapped) by PoolID when no pool has the name.
// It classifies as not_found and not worth retrying: the configuration
// names a pool the organization does not have.
var ErrPoolNotFound error = poolNotFound{}

type poolNotFound struct{}

func (poolNotFound) Error() string { return "agent pool not found" }

func (poolNotFound) Classification() (retryable bool, after time.Duration, reason string) {
	return false, 0, "not_found"
}

// Options tunes a Client. Zero values take the defaults noted on each field.
type Options struct {
	HTTPClient *http.Client // http.DefaultClient's transport when nil
	// CallTimeout bounds each call, retries included (default 30s).
	CallTimeout time.Duration
	// JobRequestsTimeout bounds JobRequests, every page and retry included
	// (default 60s): the endpoint is slow, about 4 s for 760 items. Each
	// page is also bounded by CallTimeout.
	JobRequestsTimeout time.Duration
	// JobRequestsPageSize is the $top of each page of the paged job request
	// list (default 200; the service answers at most JobRequestsCap).
	JobRequestsPageSize int
	// JobRequestsMaxPages bounds the pages one JobRequests call reads
	// (default 25).
	JobRequestsMaxPages int
	// MaxRetries is how many times a retryable failure is tried again
	// (default 3; negative disables retries).
	MaxRetries int
	// Observe, when set, is called after every HTTP attempt with the
	// endpoint name (the Endpoint constants) and the status, 0 when no
	// answer came back.
	Observe func(endpoint string, status int)
	// ObserveJobRequestPages, when set, is called after every JobRequests
	// call that paged: the Azure DevOps pool id, the pages read, and whether
	// the list was cut short (JobRequestsMaxPages or the deadline reached).
	ObserveJobRequestPages func(poolID, pages int, truncated bool)
	// ObserveRateLimit, when set, receives X-RateLimit-Remaining whenever
	// Azure DevOps sends it.
	ObserveRateLimit func(remaining float64)
	Logger           *slog.Logger // nil logs nothing
	UserAgent        string       // "agentscaler" when empty
}

// Client talks to the Azure DevOps REST API of one organization. It is safe
// for concurrent use.
type Client struct {
	org  *url.URL
	auth Authorizer
	http *http.Client
	opts Options
	log  *slog.Logger
	// retries is the policy of every call: MaxRetries, what is transient.
	retries retry.Policy

	mu     sync.Mutex
	pools  map[string]int // pool ID by pool name
	budget rateBudget
}

// Pace is how long to hold between passes so that they fit what is left of
// this identity's rate-limit budget (see rateBudget).
func (c *Client) Pace() time.Duration { return c.budget.pace(time.Now()) }

// NewClient returns a client for the organization at orgURL, such as
// https://dev.azure.com/contoso or https://tfs.example.com/DefaultCollection.
func NewClient(orgURL string, auth Authorizer, opts Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(orgURL, "/"))
	if err != nil {
		// url.Error repeats the raw URL, which may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("azuredevops: organization URL: %w", err)
	}
	switch {
	case u.User != nil:
		return nil, errors.New("azuredevops: organization URL must not carry credentials; use the token settings")
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("azuredevops: organization URL %q: scheme must be https (or http)", u.String())
	case u.Host == "":
		return nil, fmt.Errorf("azuredevops: organization URL %q: no host", u.String())
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("azuredevops: organization URL %q: no query or fragment allowed", u.String())
	}
	if auth == nil {
		return nil, errors.New("azuredevops: no Authorizer")
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	if opts.JobRequestsTimeout <= 0 {
		opts.JobRequestsTimeout = 60 * time.Second
	}
	if opts.JobRequestsPageSize <= 0 {
		opts.JobRequestsPageSize = DefaultJobRequestsPageSize
	}
	if opts.JobRequestsMaxPages <= 0 {
		opts.JobRequestsMaxPages = DefaultJobRequestsMaxPages
	}
	switch {
	case opts.MaxRetries == 0:
		opts.MaxRetries = 3
	case opts.MaxRetries < 0:
		opts.MaxRetries = 0
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "agentscaler"
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		org: u, auth: auth, http: hc, opts: opts, log: log,
		retries: retry.Policy{Retries: opts.MaxRetries, Retryable: transient},
		pools:   map[string]int{},
	}, nil
}

// APIError is an HTTP answer from Azure DevOps outside 2xx.
type APIError struct {
	Endpoint string // one of the Endpoint constants
	Status   int
	Message  string // the "message" of Azure DevOps' JSON error, bounded
	// RetryAfter is the server's hint (Retry-After or X-RateLimit-Delay),
	// 0 when it gave none.
	RetryAfter time.Duration
	typeKey    string // e.g. TaskAgentExistsException
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "azuredevops: %s: HTTP %d", e.Endpoint, e.Status)
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden || e.Status == http.StatusNonAuthoritativeInfo {
		b.WriteString(" (" + scopeHint + ")")
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Retryable reports whether trying again later may succeed: throttling (429),
// timeouts (408) and server errors (5xx).
func (e *APIError) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout || e.Status >= 500
}

// Classification describes the failure the way the scaler classifies every
// failed action (providers.Classify, through its Classified interface):
// whether trying again may succeed (Retryable), the server's hint, and a
// short reason for metrics and logs, in the words the providers use.
func (e *APIError) Classification() (retryable bool, after time.Duration, reason string) {
	switch s := e.Status; {
	case s == http.StatusTooManyRequests:
		reason = "throttled"
	case s == http.StatusRequestTimeout:
		reason = "timeout"
	case s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusNonAuthoritativeInfo:
		reason = "auth"
	case s == http.StatusNotFound:
		reason = "not_found"
	case s == http.StatusConflict:
		reason = "conflict"
	case s == http.StatusBadRequest:
		reason = "bad_request"
	case s >= 500:
		reason = "server_error"
	default:
		reason = "api_error"
	}
	return e.Retryable(), e.RetryAfter, reason
}

// PoolID returns the id of the agent pool with the given name. Answers are
// cached for the life of the client: pool ids do not change.
func (c *Client) PoolID(ctx context.Context, name string) (int, error) {
	c.mu.Lock()
	id, ok := c.pools[name]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	var pools list[Pool]
	q := url.Values{"poolName": {name}}
	if err := c.do(ctx, http.MethodGet, EndpointPools, "_apis/distributedtask/pools", q, apiVersion, nil, &pools); err != nil {
		return 0, err
	}
	for _, p := range pools.Value {
		// Pool names are case-insensitive in Azure DevOps.
		if strings.EqualFold(p.Name, name) {
			c.mu.Lock()
			c.pools[name] = p.ID
			c.mu.Unlock()
			return p.ID, nil
		}
	}
	return 0, fmt.Errorf("azuredevops: %w: %q in %s (check the name; a token without scope \"Agent Pools (Read & manage)\" sees no pools)",
		ErrPoolNotFound, name, c.org.Redacted())
}

// JobRequests returns the unfinished job requests of a pool (running and
// waiting), oldest first, one per job: of several requests of the same job
// (a retried job), the one with the highest request id.
//
// It asks for the unfinished requests (completedRequestCount=0). When the
// answer is full (JobRequestsCap), more may be waiting, and it pages the $top
// form: see pageJobRequests.
func (c *Client) JobRequests(ctx context.Context, poolID int) ([]JobRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.JobRequestsTimeout)
	defer cancel()
	path := fmt.Sprintf("_apis/distributedtask/pools/%d/jobrequests", poolID)
	var first list[JobRequest]
	if _, err := c.jobRequestsPage(ctx, path, url.Values{"completedRequestCount": {"0"}}, &first); err != nil {
		return nil, err
	}
	reqs := first.Value
	if len(reqs) >= JobRequestsCap {
		var err error
		if reqs, err = c.pageJobRequests(ctx, poolID, path, reqs); err != nil {
			return nil, err
		}
	}
	reqs = latestPerJob(reqs)
	sort.Slice(reqs, func(i, j int) bool {
		a, b := reqs[i], reqs[j]
		if !a.QueueTime.Equal(b.QueueTime) {
			return a.QueueTime.Before(b.QueueTime)
		}
		return a.RequestID < b.RequestID
	})
	return reqs, nil
}

// pageJobRequests reads the $top form of the list page by page, following
// the continuation token, and returns the unfinished requests of seed and
// of the pages, merged by request id (a page's copy is newer than seed's; a
// request a page shows finished is dropped). It stops when the token is
// gone, when a page shows no unfinished request that earlier pages did not
// (the finished cursor would walk the pool's history for ever), or after
// JobRequestsMaxPages pages. When the bound, the list's deadline, or a
// token too long to send back cut the list, waiting requests may be
// missing: that is logged and observed.
func (c *Client) pageJobRequests(ctx context.Context, poolID int, path string, seed []JobRequest) ([]JobRequest, error) {
	byID := make(map[int64]JobRequest, len(seed))
	for _, r := range seed {
		byID[r.RequestID] = r
	}
	// paged holds the unfinished requests the pages showed: a page adds
	// something when it shows one the earlier pages did not. seed does not
	// count, since the first pages list the oldest requests again.
	paged := map[int64]bool{}
	token, pages, cut := "", 0, ""
	for {
		if pages == c.opts.JobRequestsMaxPages {
			cut = fmt.Sprintf("stopped at the bound of %d pages", pages)
			break
		}
		q := url.Values{"$top": {strconv.Itoa(c.opts.JobRequestsPageSize)}}
		if token != "" {
			q.Set("continuationToken", token)
		}
		var page list[JobRequest]
		h, err := c.jobRequestsPage(ctx, path, q, &page)
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// Out of time for the whole list: what the answers so far
			// showed still holds, so serve it rather than nothing.
			cut = fmt.Sprintf("out of time reading page %d: %v", pages+1, err)
			break
		}
		if err != nil {
			return nil, fmt.Errorf("azuredevops: pool %d: job requests page %d: %w", poolID, pages+1, err)
		}
		pages++
		added := 0
		for _, r := range page.Value {
			if r.Result != nil {
				delete(byID, r.RequestID)
				continue
			}
			if !paged[r.RequestID] {
				paged[r.RequestID] = true
				added++
			}
			byID[r.RequestID] = r
		}
		token = h.Get(continuationHeader)
		if token == "" || added == 0 {
			break
		}
		if len(token) > maxContinuationToken {
			cut = fmt.Sprintf("continuation token longer than %d bytes", maxContinuationToken)
			break
		}
	}
	if cut != "" {
		c.log.Warn("job request list cut short; some waiting requests may be missing until a later reconcile",
			"pool_id", poolID, "pages", pages, "requests", len(byID), "error", cut)
	}
	if c.opts.ObserveJobRequestPages != nil {
		c.opts.ObserveJobRequestPages(poolID, pages, cut != "")
	}
	out := make([]JobRequest, 0, len(byID))
	for _, r := range byID {
		out = append(out, r)
	}
	return out, nil
}

// jobRequestsPage reads one answer of the job request list, bounded by
// CallTimeout, and returns its headers.
func (c *Client) jobRequestsPage(ctx context.Context, path string, q url.Values, out *list[JobRequest]) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	return c.exchange(ctx, http.MethodGet, EndpointJobRequests, path, q, apiVersionJobRequests, nil, out)
}

// latestPerJob keeps, of the requests of one job, the one with the highest
// request id: a retried job is queued again, and only its newest request is
// the one an agent would run. A job is its plan and job id together: the job
// id alone repeats across runs (a pipeline's single job is always
// 12f1170f-54f2-53f3-20dd-22fc7dff55f9), so it would merge unrelated jobs.
// Requests without a job id are all kept.
func latestPerJob(reqs []JobRequest) []JobRequest {
	type job struct{ plan, id string }
	latest := make(map[job]int64, len(reqs))
	for _, r := range reqs {
		k := job{r.PlanID, r.JobID}
		if r.JobID != "" && r.RequestID > latest[k] {
			latest[k] = r.RequestID
		}
	}
	out := reqs[:0]
	for _, r := range reqs {
		if r.JobID == "" || latest[job{r.PlanID, r.JobID}] == r.RequestID {
			out = append(out, r)
		}
	}
	return out
}

// Agents returns the agents registered in a pool, with their capabilities and
// the request each one is running.
func (c *Client) Agents(ctx context.Context, poolID int) ([]Agent, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	return c.agents(ctx, poolID, url.Values{"includeAssignedRequest": {"true"}, "includeCapabilities": {"true"}})
}

func (c *Client) agents(ctx context.Context, poolID int, q url.Values) ([]Agent, error) {
	var agents list[Agent]
	path := fmt.Sprintf("_apis/distributedtask/pools/%d/agents", poolID)
	if err := c.do(ctx, http.MethodGet, EndpointAgents, path, q, apiVersion, nil, &agents); err != nil {
		return nil, err
	}
	return agents.Value, nil
}

// DeleteAgent unregisters an agent. An agent that is already gone is not an
// error.
func (c *Client) DeleteAgent(ctx context.Context, poolID, agentID int) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	path := fmt.Sprintf("_apis/distributedtask/pools/%d/agents/%d", poolID, agentID)
	err := c.do(ctx, http.MethodDelete, EndpointAgentDelete, path, nil, apiVersion, nil, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil
	}
	return err
}

// AddAgent registers an agent (the pool's offline placeholder) and returns it
// as Azure DevOps stored it. Azure DevOps requires a public key; when a has
// none, a fresh RSA key is generated and its private half dropped, since a
// placeholder never connects. If an agent of that name already exists, the
// existing agent is returned.
func (c *Client) AddAgent(ctx context.Context, poolID int, a Agent) (Agent, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	if a.Authorization == nil || a.Authorization.PublicKey == nil {
		key, err := placeholderKey()
		if err != nil {
			return Agent{}, err
		}
		a.Authorization = &Authorization{PublicKey: key}
	}
	var added Agent
	path := fmt.Sprintf("_apis/distributedtask/pools/%d/agents", poolID)
	err := c.do(ctx, http.MethodPost, EndpointAgentAdd, path, nil, apiVersion, a, &added)
	if err == nil {
		return added, nil
	}
	var ae *APIError
	if !errors.As(err, &ae) || !alreadyExists(ae) {
		return Agent{}, err
	}
	existing, lerr := c.agents(ctx, poolID, url.Values{"agentName": {a.Name}, "includeCapabilities": {"true"}})
	if lerr != nil {
		return Agent{}, fmt.Errorf("azuredevops: agent %q already exists; looking it up: %w", a.Name, lerr)
	}
	for _, e := range existing {
		if strings.EqualFold(e.Name, a.Name) {
			return e, nil
		}
	}
	return Agent{}, fmt.Errorf("azuredevops: agent %q reported as existing but not found in pool %d: %w", a.Name, poolID, err)
}

// alreadyExists recognises Azure DevOps' answer to a duplicate agent name:
// 409, or a 400 carrying TaskAgentExistsException.
func alreadyExists(e *APIError) bool {
	if e.Status == http.StatusConflict {
		return true
	}
	return e.Status == http.StatusBadRequest &&
		(e.typeKey == "TaskAgentExistsException" || strings.Contains(strings.ToLower(e.Message), "already exists"))
}

// placeholderKey returns the public half of a new 2048-bit RSA key in the
// form Azure DevOps stores: base64 big-endian exponent and modulus.
func placeholderKey() (*PublicKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("azuredevops: generate agent key: %w", err)
	}
	return &PublicKey{
		Exponent: base64.StdEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
		Modulus:  base64.StdEncoding.EncodeToString(k.N.Bytes()),
	}, nil
}

// ResourceUsage returns the organization's self-hosted parallel job limit and
// how much of it is in use.
func (c *Client) ResourceUsage(ctx context.Context) (ResourceUsage, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	var u ResourceUsage
	q := url.Values{"parallelismTag": {"Private"}, "poolIsHosted": {"false"}, "includeRunningRequests": {"false"}}
	err := c.do(ctx, http.MethodGet, EndpointResourceUsage, "_apis/distributedtask/resourceusage", q, apiVersionResourceUsage, nil, &u)
	return u, err
}

// do sends one logical call, retrying what is retryable while the context's
// deadline allows, and decodes a 2xx JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, endpoint, path string, q url.Values, version string, in, out any) error {
	_, err := c.exchange(ctx, method, endpoint, path, q, version, in, out)
	return err
}

// exchange is do, returning the headers of the successful answer.
func (c *Client) exchange(ctx context.Context, method, endpoint, path string, q url.Values, version string, in, out any) (http.Header, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, fmt.Errorf("azuredevops: %s: encode request: %w", endpoint, err)
		}
	}
	u := *c.org
	u.Path = c.org.Path + "/" + path
	if q == nil {
		q = url.Values{}
	}
	q.Set("api-version", version)
	u.RawQuery = q.Encode()

	p := c.retries
	p.OnRetry = func(attempt int, wait time.Duration, err error) {
		c.log.Debug("azure devops call failed, retrying", "endpoint", endpoint, "attempt", attempt, "wait", wait, "error", err)
	}
	var h http.Header
	err := retry.Do(ctx, p, func(ctx context.Context) error {
		var err error
		h, err = c.once(ctx, method, endpoint, u.String(), body, out)
		return err
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// transient reports whether a failed attempt may pass, and the server's
// hint: a retryable status (APIError.Retryable), or a failure to reach
// Azure DevOps or read its answer while the call's deadline held.
func transient(err error) (bool, time.Duration) {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Retryable(), ae.RetryAfter
	}
	var te *transportError
	return errors.As(err, &te), 0
}

// transportError is a failure to reach Azure DevOps, or to read its answer,
// while the call's deadline still held: it may pass.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// Classification describes the failure (see APIError.Classification).
func (e *transportError) Classification() (retryable bool, after time.Duration, reason string) {
	return true, 0, "network"
}

// once makes one HTTP exchange and returns the answer's headers. A failure
// that may pass is a retryable *APIError or a *transportError (transient).
func (c *Client) once(ctx context.Context, method, endpoint, target string, body []byte, out any) (http.Header, error) {
	authz, err := c.auth.Authorization(ctx)
	if err != nil {
		return nil, fmt.Errorf("azuredevops: %s: authorize: %w", endpoint, err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("azuredevops: %s: build request: %w", endpoint, err)
	}
	req.Header.Set("Authorization", authz)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.opts.UserAgent)
	// Ask for a 401 instead of a redirect to the sign-in page (or a 203
	// with its HTML) when the credentials are refused.
	req.Header.Set("X-TFS-FedAuthRedirect", "Suppress")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.http.Do(req)
	if err != nil {
		c.observe(endpoint, 0)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("azuredevops: %s %s: gave up waiting for the answer: %w", method, endpoint, ctxErr)
		}
		return nil, &transportError{fmt.Errorf("azuredevops: %s %s: %w", method, endpoint, err)}
	}
	defer resp.Body.Close()
	c.observe(endpoint, resp.StatusCode)
	c.budget.observe(resp.Header, time.Now())
	if rem := resp.Header.Get("X-RateLimit-Remaining"); rem != "" && c.opts.ObserveRateLimit != nil {
		if f, perr := strconv.ParseFloat(rem, 64); perr == nil {
			c.opts.ObserveRateLimit(f)
		}
	}

	if resp.StatusCode < 200 || resp.StatusCode > 299 || resp.StatusCode == http.StatusNonAuthoritativeInfo {
		return nil, c.apiError(endpoint, resp, authz)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("azuredevops: %s %s: answer cut by the call's deadline: %w", method, endpoint, ctxErr)
		}
		return nil, &transportError{fmt.Errorf("azuredevops: %s: read answer: %w", endpoint, err)}
	}
	if len(data) > maxBody {
		return nil, fmt.Errorf("azuredevops: %s: answer larger than %d MiB", endpoint, maxBody>>20)
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return resp.Header, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("azuredevops: %s: decode answer: %w", endpoint, err)
	}
	return resp.Header, nil
}

// apiError builds the APIError for a non-2xx answer, taking care that the
// credentials never end up in its text even if the server echoes them.
func (c *Client) apiError(endpoint string, resp *http.Response, authz string) *APIError {
	e := &APIError{Endpoint: endpoint, Status: resp.StatusCode, RetryAfter: retryHint(resp.Header, time.Now())}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var msg struct {
		Message string `json:"message"`
		TypeKey string `json:"typeKey"`
	}
	if json.Unmarshal(data, &msg) == nil {
		e.Message, e.typeKey = msg.Message, msg.TypeKey
	}
	if resp.StatusCode == http.StatusNonAuthoritativeInfo {
		e.Message = "Azure DevOps answered with a sign-in page instead of data: the credentials were not accepted"
	}
	e.Message = redact(e.Message, authz)
	if len(e.Message) > maxErrorMessage {
		e.Message = e.Message[:maxErrorMessage] + "..."
	}
	return e
}

// redact removes the Authorization header value, and its credential part,
// from s.
func redact(s, authz string) string {
	if authz == "" {
		return s
	}
	s = strings.ReplaceAll(s, authz, "[redacted]")
	if _, cred, ok := strings.Cut(authz, " "); ok && len(cred) >= 8 {
		s = strings.ReplaceAll(s, cred, "[redacted]")
		if raw, err := base64.StdEncoding.DecodeString(cred); err == nil {
			if _, secret, ok := strings.Cut(string(raw), ":"); ok && len(secret) >= 8 {
				s = strings.ReplaceAll(s, secret, "[redacted]")
			}
		}
	}
	return s
}

// retryHint reads how long Azure DevOps asks the caller to wait: Retry-After
// (seconds or an HTTP date) and X-RateLimit-Delay (seconds, possibly
// fractional), whichever is longer.
func retryHint(h http.Header, now time.Time) time.Duration {
	var d time.Duration
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.Atoi(v); err == nil && s > 0 {
			d = time.Duration(s) * time.Second
		} else if t, err := http.ParseTime(v); err == nil && t.After(now) {
			d = t.Sub(now)
		}
	}
	if v := strings.TrimSpace(h.Get("X-RateLimit-Delay")); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
			d = max(d, time.Duration(s*float64(time.Second)))
		}
	}
	return d
}

func (c *Client) observe(endpoint string, status int) {
	if c.opts.Observe != nil {
		c.opts.Observe(endpoint, status)
	}
}
