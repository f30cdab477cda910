package testagent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	callTimeout = 30 * time.Second
	// pollTimeout bounds a message poll, which the service holds open for
	// up to about 50 seconds.
	pollTimeout = 60 * time.Second
	// Pools and agents are released at 7.1; sessions, messages and job
	// request updates are preview APIs.
	apiVersion        = "7.1"
	apiVersionPreview = "7.1-preview.1"
	// lockToken is what the agent sends with job request updates: the
	// service no longer uses it.
	lockToken = "00000000-0000-0000-0000-000000000000"
	maxAnswer = 4 << 20
)

// The payloads, written from the TaskAgent, TaskAgentSession,
// TaskAgentMessage, AgentJobRequestMessage and TaskAgentJobRequest
// contracts, only the fields this agent uses.

type taskAgent struct {
	ID                 int                 `json:"id,omitempty"`
	Name               string              `json:"name"`
	Version            string              `json:"version"`
	OSDescription      string              `json:"osDescription"`
	Enabled            bool                `json:"enabled"`
	MaxParallelism     int                 `json:"maxParallelism"`
	Authorization      *agentAuthorization `json:"authorization,omitempty"`
	SystemCapabilities map[string]string   `json:"systemCapabilities,omitempty"`
}

type agentAuthorization struct {
	PublicKey publicKey `json:"publicKey"`
}

type publicKey struct {
	Exponent string `json:"exponent"`
	Modulus  string `json:"modulus"`
}

type agentRef struct {
	ID            int    `json:"id"`
	Name          string `json:"name"`
	Version       string `json:"version"`
	OSDescription string `json:"osDescription"`
}

type taskAgentSession struct {
	SessionID          string            `json:"sessionId"`
	OwnerName          string            `json:"ownerName"`
	Agent              agentRef          `json:"agent"`
	SystemCapabilities map[string]string `json:"systemCapabilities,omitempty"`
	UseFipsEncryption  bool              `json:"useFipsEncryption"`
}

type taskAgentMessage struct {
	MessageID   int64  `json:"messageId"`
	MessageType string `json:"messageType"`
	Body        string `json:"body"`
}

type jobRequestMessage struct {
	RequestID      int64               `json:"requestId"`
	JobID          string              `json:"jobId"`
	JobDisplayName string              `json:"jobDisplayName"`
	Variables      map[string]variable `json:"variables"`
}

type variable struct {
	Value string `json:"value"`
}

type jobRequestUpdate struct {
	RequestID   int64      `json:"requestId"`
	ReceiveTime *time.Time `json:"receiveTime,omitempty"`
	FinishTime  *time.Time `json:"finishTime,omitempty"`
	Result      string     `json:"result,omitempty"`
}

type list[T any] struct {
	Count int `json:"count"`
	Value []T `json:"value"`
}

// statusError is an answer outside 2xx.
type statusError struct {
	method, url string // the URL without its query
	status      int
	message     string // the service's error message, if it sent one
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("%s %s answered %d %s", e.method, e.url, e.status, http.StatusText(e.status))
	if e.message != "" {
		s += ": " + e.message
	}
	return s
}

// authError is the server refusing the token.
type authError struct {
	tokenName, org string
	status         int
}

func (e *authError) Error() string {
	return fmt.Sprintf("%s was rejected by %s (%d): check the token and its Agent Pools (read, manage) scope",
		e.tokenName, e.org, e.status)
}

// status is the HTTP status of a statusError, 0 for anything else.
func status(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	return 0
}

func isAuth(err error) bool {
	var ae *authError
	return errors.As(err, &ae)
}

// server makes the agent's calls to one organization.
type server struct {
	org       string
	authz     string
	tokenName string
	http      *http.Client
}

func newServer(cfg config) *server {
	return &server{
		org:       cfg.orgURL,
		authz:     "Basic " + base64.StdEncoding.EncodeToString([]byte(":"+cfg.token)),
		tokenName: cfg.tokenName,
		http:      &http.Client{},
	}
}

// do makes one call under its own deadline and decodes a 2xx answer with a
// body into out. It returns the status.
func (s *server) do(ctx context.Context, timeout time.Duration, method, path string, q url.Values, version string, in, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	shown := s.org + "/_apis/distributedtask/" + path
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("%s %s: encode the request: %w", method, shown, err)
		}
		body = bytes.NewReader(b)
	}
	if q == nil {
		q = url.Values{}
	}
	q.Set("api-version", version)
	req, err := http.NewRequestWithContext(ctx, method, shown+"?"+q.Encode(), body)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, shown, err)
	}
	req.Header.Set("Authorization", s.authz)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "agentscaler-testagent")
	// A 401 rather than a redirect to the sign-in page.
	req.Header.Set("X-TFS-FedAuthRedirect", "Suppress")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, s.transportError(ctx, method, shown, timeout, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden ||
		resp.StatusCode == http.StatusNonAuthoritativeInfo: // the sign-in page
		return resp.StatusCode, &authError{tokenName: s.tokenName, org: s.org, status: resp.StatusCode}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return resp.StatusCode, &statusError{method: method, url: shown, status: resp.StatusCode, message: serviceMessage(data)}
	case err != nil:
		return resp.StatusCode, fmt.Errorf("%s %s: read the answer: %w", method, shown, err)
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s answered something other than Azure DevOps JSON (check AZP_URL): %w", method, shown, err)
		}
	}
	return resp.StatusCode, nil
}

// transportError says what went wrong when no answer came.
func (s *server) transportError(ctx context.Context, method, shown string, timeout time.Duration, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its text repeats the URL with the query
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach AZP_URL %s: connection refused; check its host and port", s.org)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%s %s: no answer within %s: %w", method, shown, timeout, ctx.Err())
	case ctx.Err() != nil:
		return fmt.Errorf("%s %s: %w", method, shown, ctx.Err())
	}
	return fmt.Errorf("cannot reach AZP_URL %s (%s %s): %w", s.org, method, shown, err)
}

// serviceMessage is the message of the service's error body, bounded.
func serviceMessage(data []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &e) != nil {
		return ""
	}
	if len(e.Message) > 300 {
		return e.Message[:300] + "..."
	}
	return e.Message
}

func poolPath(poolID int, parts ...string) string {
	return strings.Join(append([]string{"pools", strconv.Itoa(poolID)}, parts...), "/")
}

// poolID finds the pool by name, as the agent's configure step does. It
// is the first call, so a 404 means AZP_URL is not an organization.
func (s *server) poolID(ctx context.Context, name string) (int, error) {
	var pools list[struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}]
	_, err := s.do(ctx, callTimeout, http.MethodGet, "pools", url.Values{"poolName": {name}}, apiVersion, nil, &pools)
	if status(err) == http.StatusNotFound {
		return 0, fmt.Errorf("AZP_URL %s is not an Azure DevOps organization URL: %w; expected the organization URL, such as %s",
			s.org, err, orgURLExample)
	}
	if err != nil {
		return 0, err
	}
	for _, p := range pools.Value {
		if strings.EqualFold(p.Name, name) {
			return p.ID, nil
		}
	}
	return 0, fmt.Errorf("agent pool %q not found in %s: check AZP_POOL (and that the token may read agent pools)", name, s.org)
}

// agentByName returns the pool's agent of that name, or nil.
func (s *server) agentByName(ctx context.Context, poolID int, name string) (*taskAgent, error) {
	var agents list[taskAgent]
	if _, err := s.do(ctx, callTimeout, http.MethodGet, poolPath(poolID, "agents"), url.Values{"agentName": {name}}, apiVersion, nil, &agents); err != nil {
		return nil, err
	}
	for _, a := range agents.Value {
		if strings.EqualFold(a.Name, name) {
			return &a, nil
		}
	}
	return nil, nil
}

func (s *server) addAgent(ctx context.Context, poolID int, a taskAgent) (taskAgent, error) {
	var out taskAgent
	_, err := s.do(ctx, callTimeout, http.MethodPost, poolPath(poolID, "agents"), nil, apiVersion, a, &out)
	return out, err
}

func (s *server) replaceAgent(ctx context.Context, poolID, agentID int, a taskAgent) (taskAgent, error) {
	var out taskAgent
	a.ID = agentID
	_, err := s.do(ctx, callTimeout, http.MethodPut, poolPath(poolID, "agents", strconv.Itoa(agentID)), nil, apiVersion, a, &out)
	return out, err
}

// deleteAgent unregisters; an agent already gone is not an error.
func (s *server) deleteAgent(ctx context.Context, poolID, agentID int) error {
	_, err := s.do(ctx, callTimeout, http.MethodDelete, poolPath(poolID, "agents", strconv.Itoa(agentID)), nil, apiVersion, nil, nil)
	if status(err) == http.StatusNotFound {
		return nil
	}
	return err
}

func (s *server) createSession(ctx context.Context, poolID int, in taskAgentSession) (taskAgentSession, error) {
	var out taskAgentSession
	_, err := s.do(ctx, callTimeout, http.MethodPost, poolPath(poolID, "sessions"), nil, apiVersionPreview, in, &out)
	if err == nil && out.SessionID == "" {
		err = fmt.Errorf("POST %s/_apis/distributedtask/%s answered no sessionId", s.org, poolPath(poolID, "sessions"))
	}
	return out, err
}

// deleteSession closes the session; one already gone is not an error.
func (s *server) deleteSession(ctx context.Context, poolID int, sessionID string) error {
	_, err := s.do(ctx, callTimeout, http.MethodDelete, poolPath(poolID, "sessions", sessionID), nil, apiVersionPreview, nil, nil)
	if status(err) == http.StatusNotFound {
		return nil
	}
	return err
}

// getMessage long-polls for the next message; nil when the poll ends
// without one.
func (s *server) getMessage(ctx context.Context, poolID int, sessionID string, last int64) (*taskAgentMessage, error) {
	q := url.Values{"sessionId": {sessionID}}
	if last > 0 {
		q.Set("lastMessageId", strconv.FormatInt(last, 10))
	}
	var msg *taskAgentMessage
	code, err := s.do(ctx, pollTimeout, http.MethodGet, poolPath(poolID, "messages"), q, apiVersionPreview, nil, &msg)
	if err != nil || code == http.StatusAccepted || code == http.StatusNoContent {
		return nil, err
	}
	return msg, nil
}

func (s *server) deleteMessage(ctx context.Context, poolID int, sessionID string, messageID int64) error {
	_, err := s.do(ctx, callTimeout, http.MethodDelete, poolPath(poolID, "messages", strconv.FormatInt(messageID, 10)),
		url.Values{"sessionId": {sessionID}}, apiVersionPreview, nil, nil)
	return err
}

func (s *server) updateRequest(ctx context.Context, poolID int, u jobRequestUpdate) error {
	_, err := s.do(ctx, callTimeout, http.MethodPatch, poolPath(poolID, "jobrequests", strconv.FormatInt(u.RequestID, 10)),
		url.Values{"lockToken": {lockToken}}, apiVersionPreview, u, nil)
	return err
}
