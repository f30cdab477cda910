package azuredevops

import (
	lru "container/list"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/hookhttp"
	"github.com/agentscaler/agentscaler/internal/logsafe"
)

// Service hook event types the autoscaler acts on.
const (
	EventJobStateChanged = "ms.vss-pipelines.job-state-changed-event"
	EventRunStateChanged = "ms.vss-pipelines.run-state-changed-event"
)

// Observe labels for the event kind: a fixed set, never the raw event type,
// so metrics stay low-cardinality whatever a caller posts.
const (
	eventLabelJob   = "job_state_changed"
	eventLabelRun   = "run_state_changed"
	eventLabelOther = "other"
)

// maxHookBody bounds a service hook body. Real pipeline events are a few KiB.
const maxHookBody = 1 << 20

// maxEventID bounds a service hook's id. Azure DevOps sends a GUID (36
// bytes); anything far longer is not a real notification.
const maxEventID = 128

// acceptTimeout bounds Accept, which should only enqueue: if it is stuck, a
// 503 lets Azure DevOps retry rather than hold its connection open.
const acceptTimeout = 5 * time.Second

// retryAfterSeconds is the Retry-After sent with a 503.
const retryAfterSeconds = "5"

// Event is what the autoscaler reads from a service hook. For job events
// State and Result are the job's (waiting, inProgress, completed); for run
// events, the run's. For other event types only ID and Type are set.
type Event struct {
	ID             string
	Type           string
	NotificationID int
	CreatedDate    time.Time
	State, Result  string
	JobID, JobName string
	RunID          int
	PipelineID     int
	PipelineName   string
	// OrgURL is the organization's or collection's base URL without a
	// trailing slash, https://dev.azure.com/contoso, in whichever form the
	// hook gives it (compare with SameOrganization).
	OrgURL    string
	ProjectID string
}

// Scaler is what a service hook tells the scaler: the events it means.
type Scaler interface {
	JobWaiting(ci.Event)
	JobCompleted(ci.Event)
}

// Dispatch hands the scaler what an event means. A job queued is a job
// waiting, named by its job id (the hook names neither the pool nor the
// demands); a job or a run that completed is a job completed. Anything else
// (a job started, a run in progress) changes nothing worth a pass.
func Dispatch(e Event, s Scaler) {
	switch {
	case e.Type == EventJobStateChanged && e.State == "waiting":
		s.JobWaiting(ci.Event{System: ci.AzureDevOps, Ref: e.JobID})
	case e.Type == EventJobStateChanged && e.State == "completed",
		e.Type == EventRunStateChanged && e.State == "completed":
		s.JobCompleted(ci.Event{System: ci.AzureDevOps, Ref: e.JobID})
	}
}

// hookHeader is the part of the envelope every event type shares and that
// ParseEvent insists on.
type hookHeader struct {
	ID        string `json:"id"`
	EventType string `json:"eventType"`
}

// hookEnvelope is the part of a pipelines event the autoscaler reads; the
// rest (messages, links, repositories) is ignored.
type hookEnvelope struct {
	NotificationID int       `json:"notificationId"`
	CreatedDate    time.Time `json:"createdDate"`
	Resource       struct {
		ProjectID string `json:"projectId"`
		Job       *struct {
			ID     string `json:"id"`
			Name   string `json:"name"`
			State  string `json:"state"`
			Result string `json:"result"`
		} `json:"job"`
		Run *struct {
			ID       int           `json:"id"`
			State    string        `json:"state"`
			Result   string        `json:"result"`
			Pipeline *hookPipeline `json:"pipeline"`
		} `json:"run"`
		Pipeline *hookPipeline `json:"pipeline"`
	} `json:"resource"`
	ResourceContainers struct {
		Collection hookContainer `json:"collection"`
		Account    hookContainer `json:"account"`
		Project    hookContainer `json:"project"`
	} `json:"resourceContainers"`
}

type hookPipeline struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

type hookContainer struct {
	ID      string `json:"id"`
	BaseURL string `json:"baseUrl"`
}

// ParseEvent reads a service hook body. It requires the envelope's id and
// eventType and ignores fields it does not know. Only job and run state
// events are read further; any other type yields just ID and Type.
func ParseEvent(body []byte) (Event, error) {
	var h hookHeader
	if err := json.Unmarshal(body, &h); err != nil {
		return Event{}, fmt.Errorf("service hook: %w", jsonProblem(err))
	}
	switch {
	case h.ID == "" && h.EventType == "":
		return Event{}, errors.New("service hook: no id and no eventType")
	case h.ID == "":
		return Event{}, fmt.Errorf("service hook %s: no id", logsafe.Clip(h.EventType))
	case h.EventType == "":
		return Event{}, fmt.Errorf("service hook %s: no eventType", logsafe.Clip(h.ID))
	case len(h.ID) > maxEventID:
		return Event{}, fmt.Errorf("service hook %s: id of %d bytes, over %d: not an Azure DevOps notification id", logsafe.Clip(h.ID), len(h.ID), maxEventID)
	}
	e := Event{ID: h.ID, Type: h.EventType}
	if e.Type != EventJobStateChanged && e.Type != EventRunStateChanged {
		return e, nil
	}

	var env hookEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return Event{}, fmt.Errorf("service hook %s (%s): %w", e.ID, logsafe.Clip(e.Type), jsonProblem(err))
	}
	e.NotificationID = env.NotificationID
	e.CreatedDate = env.CreatedDate
	res := env.Resource
	if run := res.Run; run != nil {
		e.RunID = run.ID
		if e.Type == EventRunStateChanged {
			e.State, e.Result = run.State, run.Result
		}
		if run.Pipeline != nil {
			e.PipelineID, e.PipelineName = run.Pipeline.ID, run.Pipeline.Name
		}
	}
	if res.Pipeline != nil {
		e.PipelineID, e.PipelineName = res.Pipeline.ID, res.Pipeline.Name
	}
	if job := res.Job; job != nil && e.Type == EventJobStateChanged {
		e.JobID, e.JobName = job.ID, job.Name
		e.State, e.Result = job.State, job.Result
	}
	rc := env.ResourceContainers
	// On Azure DevOps Server the account is the server and the collection is
	// what the configuration names; on Services both are the organization.
	e.OrgURL = strings.TrimRight(firstNonEmpty(rc.Collection.BaseURL, rc.Account.BaseURL), "/")
	e.ProjectID = firstNonEmpty(rc.Project.ID, res.ProjectID)
	return e, nil
}

// jsonProblem says what is wrong with a body, fit for the answer: a type
// mismatch names the field, not the Go type it was read into, and any text
// of the body that the error quotes (a bad date) is clipped.
func jsonProblem(err error) error {
	if ute, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return fmt.Errorf("field %s: a JSON %s is not what Azure DevOps sends there", logsafe.Clip(ute.Field), ute.Value)
	}
	return errors.New(logsafe.Clip(err.Error()))
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Authenticator reports whether a service hook request carries the shared
// secret.
type Authenticator func(*http.Request) bool

// BasicAuth accepts requests with this user and password in basic auth, as a
// service hook subscription sends them. Both are compared as SHA-256 digests
// in constant time, so neither their content nor their length shows in the
// response time. An empty password accepts nothing.
func BasicAuth(user, password string) Authenticator {
	wantUser, wantPassword := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return func(r *http.Request) bool {
		u, p, ok := r.BasicAuth()
		gotUser, gotPassword := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passwordOK := subtle.ConstantTimeCompare(gotPassword[:], wantPassword[:])
		return ok && password != "" && userOK&passwordOK == 1
	}
}

// HeaderAuth accepts requests whose header name carries value (a shared key
// set in the subscription's HTTP headers). The value is compared as a
// SHA-256 digest in constant time. An empty value accepts nothing.
func HeaderAuth(name, value string) Authenticator {
	want := sha256.Sum256([]byte(value))
	return func(r *http.Request) bool {
		got := sha256.Sum256([]byte(r.Header.Get(name)))
		return value != "" && subtle.ConstantTimeCompare(got[:], want[:]) == 1
	}
}

// Dedup remembers recent service hook ids, because Azure DevOps redelivers a
// notification whose answer it did not get. It keeps at most size ids, each
// for ttl, and forgets the least recently remembered first. It is safe for
// concurrent use.
//
// An id is kept as its SHA-256, never as sent, so every entry has the same
// small size (about 200 bytes with its list and map overhead) whatever the
// caller posted: size bounds the memory, at about 2 MB for 10,000 ids.
type Dedup struct {
	mu    sync.Mutex
	size  int
	ttl   time.Duration
	order *lru.List                 // of *dedupEntry, most recently remembered first
	byID  map[dedupKey]*lru.Element // key -> element in order
}

type dedupKey [sha256.Size]byte

type dedupEntry struct {
	key dedupKey
	at  time.Time
}

// NewDedup returns a Dedup holding up to size ids (at least one) for ttl each.
func NewDedup(size int, ttl time.Duration) *Dedup {
	return &Dedup{size: max(size, 1), ttl: ttl, order: lru.New(), byID: make(map[dedupKey]*lru.Element)}
}

// Seen reports whether id was remembered less than ttl before now. It
// records nothing.
func (d *Dedup) Seen(id string, now time.Time) bool {
	key := sha256.Sum256([]byte(id))
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.byID[key]
	return ok && now.Sub(el.Value.(*dedupEntry).at) < d.ttl
}

// Remember records id as handled at now, then drops expired ids and the
// least recently remembered beyond the size bound.
func (d *Dedup) Remember(id string, now time.Time) {
	key := sha256.Sum256([]byte(id))
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.byID[key]; ok {
		el.Value.(*dedupEntry).at = now
		d.order.MoveToFront(el)
	} else {
		d.byID[key] = d.order.PushFront(&dedupEntry{key: key, at: now})
	}
	for el := d.order.Back(); el != nil; el = d.order.Back() {
		e := el.Value.(*dedupEntry)
		if d.order.Len() <= d.size && now.Sub(e.at) < d.ttl {
			break
		}
		d.order.Remove(el)
		delete(d.byID, e.key)
	}
}

// HookHandler receives Azure DevOps service hooks. It authenticates, bounds
// and parses the body, drops redeliveries, and hands job and run state events
// (every state: Accept decides what matters) to Accept, which must only
// enqueue work so the hook is answered at once.
//
// Answers: 405 for anything but POST; 401 with a basic challenge on bad
// credentials; 413 over 1 MiB; 400 for a body that does not parse; 202 for
// other event types and for events from another organization; 200 for a
// redelivered id; 200 once Accept succeeded;
// 503 with Retry-After when it failed, so Azure DevOps retries.
type HookHandler struct {
	// Auth checks the shared secret. Nil rejects every request: the
	// endpoint is never open by accident.
	Auth Authenticator
	// Dedup drops redeliveries; nil disables it.
	Dedup *Dedup
	// Organization, when set, is the organization or collection URL served:
	// a job or run event whose resourceContainers name another one (in any
	// URL form, see Organization) is answered 202 and never reaches Accept.
	// An event that names none is taken.
	Organization string
	// Accept takes a job or run state event. Required.
	Accept func(ctx context.Context, e Event) error
	// Observe, when set, counts each hook: event is job_state_changed,
	// run_state_changed or other; outcome is accepted, duplicate, ignored,
	// other_organization, unauthorized, too_large, bad_request,
	// method_not_allowed or error.
	Observe func(event, outcome string)
	// Logger receives a debug line per hook (id, type, state, outcome,
	// never headers); nil discards.
	Logger *slog.Logger
	// Now is the clock for Dedup; nil is time.Now.
	Now func() time.Time
}

// NewHookHandler is the service hook endpoint as serve runs it: hooks
// authenticated by auth, redeliveries of the last hour dropped, events of
// other organizations than organization ignored, and what each event means
// handed to s (Dispatch). lag, when set, is told how late each event came.
func NewHookHandler(auth Authenticator, organization string, s Scaler, lag func(time.Duration), observe func(event, outcome string), log *slog.Logger) *HookHandler {
	return &HookHandler{
		Auth:         auth,
		Dedup:        NewDedup(10000, time.Hour),
		Organization: organization,
		Accept: func(_ context.Context, e Event) error {
			if lag != nil && !e.CreatedDate.IsZero() {
				lag(time.Since(e.CreatedDate))
			}
			Dispatch(e, s)
			return nil
		},
		Observe: observe,
		Logger:  log,
	}
}

func (h *HookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := hookhttp.Logger(h.Logger)
	if !hookhttp.Post(w, r, log, h.Observe, eventLabelOther) {
		return
	}
	if h.Auth == nil || !h.Auth(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="agentscaler"`)
		hookhttp.Reply(w, log.With("remote", r.RemoteAddr), h.Observe, http.StatusUnauthorized, eventLabelOther, "unauthorized", "unauthorized")
		return
	}

	body, ok := hookhttp.ReadBody(w, r, maxHookBody, log, h.Observe, eventLabelOther)
	if !ok {
		return
	}
	e, err := ParseEvent(body)
	if err != nil {
		hookhttp.Reply(w, log, h.Observe, http.StatusBadRequest, eventLabelOther, "bad_request", err.Error())
		return
	}

	log = log.With("id", logsafe.Clip(e.ID), "type", logsafe.Clip(e.Type), "state", logsafe.Clip(e.State))
	label := eventLabel(e.Type)
	if label == eventLabelOther {
		hookhttp.Reply(w, log, h.Observe, http.StatusAccepted, label, "ignored", "ignored: not a job or run state event")
		return
	}
	if h.Organization != "" && e.OrgURL != "" && !SameOrganization(e.OrgURL, h.Organization) {
		// Worth a warning: the subscription posts to the wrong service.
		log.Warn("service hook from another organization ignored", "organization", logsafe.Clip(e.OrgURL))
		hookhttp.Reply(w, log, h.Observe, http.StatusAccepted, label, "other_organization", "ignored: from another organization than the one served")
		return
	}
	if h.Dedup != nil && h.Dedup.Seen(e.ID, hookhttp.Now(h.Now)) {
		hookhttp.Reply(w, log, h.Observe, http.StatusOK, label, "duplicate", "already accepted")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), acceptTimeout)
	defer cancel()
	if err := h.Accept(ctx, e); err != nil {
		log.Warn("service hook not accepted; asking Azure DevOps to retry", "error", err)
		w.Header().Set("Retry-After", retryAfterSeconds)
		hookhttp.Reply(w, log, h.Observe, http.StatusServiceUnavailable, label, "error", "not accepted, retry later")
		return
	}
	// Remembered only now: a failed Accept must not turn the retry into a duplicate.
	if h.Dedup != nil {
		h.Dedup.Remember(e.ID, hookhttp.Now(h.Now))
	}
	hookhttp.Reply(w, log, h.Observe, http.StatusOK, label, "accepted", "accepted")
}

// eventLabel maps an event type to its fixed Observe label.
func eventLabel(eventType string) string {
	switch eventType {
	case EventJobStateChanged:
		return eventLabelJob
	case EventRunStateChanged:
		return eventLabelRun
	default:
		return eventLabelOther
	}
}
