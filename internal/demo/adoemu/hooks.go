package adoemu

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// Subscription states, as the service names them.
const (
	SubscriptionEnabled     = "enabled"
	SubscriptionOnProbation = "onProbation"
	SubscriptionDisabled    = "disabledBySystem"
)

const (
	eventType       = "ms.vss-pipelines.job-state-changed-event"
	resourceVersion = "5.1-preview.1"
	// maxRetries is how often the service retries a delivery that failed
	// with 408, 502, 503, 504 or a connection error.
	maxRetries = 8
	// probationLimit is how many failed notifications in a row disable a
	// subscription.
	probationLimit = 5
)

// Subscription is a web hook subscription for job state changes.
type Subscription struct {
	URL      string
	Username string // basic auth, sent when Username or Password is set
	Password string
	Header   map[string]string // extra HTTP headers
}

// Delivery is one attempt to post an event to a subscription.
type Delivery struct {
	SubscriptionID string
	EventID        string
	NotificationID int
	RequestID      int64  // not in the payload; for test assertions
	JobState       string // waiting, inProgress, completed
	Attempt        int    // 1 for the first try
	Status         int    // HTTP status, 0 when the connection failed
	Err            string // connection error, if any
	Body           []byte
	Time           time.Time
}

type subscription struct {
	Subscription
	id            string
	state         string
	failures      int // failed notifications in a row
	notifications int
}

type sentBody struct {
	notificationID int
	body           []byte
}

type event struct {
	id        string
	requestID int64
	state     string
	bodies    map[string]sentBody // by subscription id
}

// hooks is the service hook state of an Emulator, guarded by its mutex.
type hooks struct {
	subs       []*subscription
	events     map[string]*event
	deliveries []Delivery
	inflight   int
	settled    chan struct{} // closed and replaced whenever inflight drops
}

func newHooks() hooks {
	return hooks{events: map[string]*event{}, settled: make(chan struct{})}
}

// Subscribe adds a web hook subscription for job state changes and returns
// its id. Events from then on are posted to it.
func (e *Emulator) Subscribe(s Subscription) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	sub := &subscription{Subscription: s, id: newGUID(), state: SubscriptionEnabled}
	e.subs = append(e.subs, sub)
	return sub.id
}

// SubscriptionState returns the state of a subscription (Subscription*
// constants), or "" for an unknown id.
func (e *Emulator) SubscriptionState(id string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.subs {
		if s.id == id {
			return s.state
		}
	}
	return ""
}

// Deliveries returns every delivery attempt so far, in the order they
// finished.
func (e *Emulator) Deliveries() []Delivery {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.deliveries)
}

// Redeliver posts an event again, byte for byte, to every subscription that
// was sent it and is not disabled: a duplicate delivery, as the service makes
// when it did not see an answer in time.
func (e *Emulator) Redeliver(eventID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev, ok := e.events[eventID]
	if !ok {
		return fmt.Errorf("adoemu: event %q not found", eventID)
	}
	if e.closed {
		return fmt.Errorf("adoemu: closed")
	}
	for _, sub := range e.subs {
		if b, ok := ev.bodies[sub.id]; ok && sub.state != SubscriptionDisabled {
			e.startDeliveryLocked(sub, ev, b)
		}
	}
	return nil
}

// Quiesce waits until no delivery is in flight, retries included.
func (e *Emulator) Quiesce(ctx context.Context) error {
	for {
		e.mu.Lock()
		n, ch := e.inflight, e.settled
		e.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("adoemu: %d deliveries still in flight: %w", n, ctx.Err())
		}
	}
}

// postLocked posts the request's current state to every subscription that
// is not disabled. The event id is shared by all of them and by retries.
func (e *Emulator) postLocked(r *request) {
	if e.closed {
		return
	}
	payload := e.eventPayloadLocked(r)
	ev := &event{id: payload.ID, requestID: r.id, state: payload.Resource.Job.State, bodies: map[string]sentBody{}}
	e.events[ev.id] = ev
	for _, sub := range e.subs {
		if sub.state == SubscriptionDisabled {
			continue
		}
		sub.notifications++
		payload.SubscriptionID, payload.NotificationID = sub.id, sub.notifications
		body, err := json.Marshal(payload)
		if err != nil {
			e.log.Error("encode event", "error", err)
			continue
		}
		b := sentBody{notificationID: sub.notifications, body: body}
		ev.bodies[sub.id] = b
		e.startDeliveryLocked(sub, ev, b)
	}
}

func (e *Emulator) startDeliveryLocked(sub *subscription, ev *event, b sentBody) {
	e.inflight++
	e.wg.Add(1)
	go e.deliver(sub, ev, b)
}

// deliver posts one notification, retrying as the service does: 408, 502,
// 503, 504 and connection errors are retried up to 8 times with a doubling
// delay; 410 disables the subscription; any other failure counts towards
// probation.
func (e *Emulator) deliver(sub *subscription, ev *event, b sentBody) {
	defer func() {
		e.mu.Lock()
		e.inflight--
		close(e.settled)
		e.settled = make(chan struct{})
		e.mu.Unlock()
		e.wg.Done()
	}()
	delay := e.opts.RetryBase
	for attempt := 1; ; attempt++ {
		e.mu.Lock()
		stop := sub.state == SubscriptionDisabled || e.closed
		e.mu.Unlock()
		if stop {
			return
		}
		status, err := e.send(sub.Subscription, b.body)
		if e.ctx.Err() != nil {
			return
		}
		d := Delivery{
			SubscriptionID: sub.id, EventID: ev.id, NotificationID: b.notificationID, RequestID: ev.requestID,
			JobState: ev.state, Attempt: attempt, Status: status, Body: b.body, Time: time.Now(),
		}
		if err != nil {
			d.Err = err.Error()
		}
		e.mu.Lock()
		e.deliveries = append(e.deliveries, d)
		e.mu.Unlock()

		switch {
		case err == nil && status >= 200 && status < 300:
			e.settle(sub, SubscriptionEnabled)
			return
		case err == nil && status == http.StatusGone:
			e.log.Warn("service hook subscription disabled: receiver answered 410", "subscription", sub.id)
			e.settle(sub, SubscriptionDisabled)
			return
		case (err != nil || retryable(status)) && attempt <= maxRetries:
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-e.ctx.Done():
				t.Stop()
				return
			}
			delay *= 2
		default:
			e.log.Warn("service hook delivery failed", "subscription", sub.id, "event", ev.id, "status", status, "error", err)
			e.settle(sub, "")
			return
		}
	}
}

// settle records the outcome of a notification: success re-enables a
// subscription on probation, 410 disables it, and a failure ("") puts it on
// probation or, after probationLimit failures in a row, disables it.
func (e *Emulator) settle(sub *subscription, state string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if sub.state == SubscriptionDisabled {
		return
	}
	switch state {
	case SubscriptionEnabled:
		sub.failures = 0
		sub.state = SubscriptionEnabled
	case SubscriptionDisabled:
		sub.state = SubscriptionDisabled
	default:
		sub.failures++
		sub.state = SubscriptionOnProbation
		if sub.failures >= probationLimit {
			sub.state = SubscriptionDisabled
		}
	}
}

func retryable(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// send makes one delivery attempt and returns the receiver's status.
func (e *Emulator) send(s Subscription, body []byte) (int, error) {
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.HookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build service hook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if s.Username != "" || s.Password != "" {
		req.SetBasicAuth(s.Username, s.Password)
	}
	for k, v := range s.Header {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post service hook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)) // drain so the connection is reused
	return resp.StatusCode, nil
}

// eventPayloadLocked builds the job-state-changed event for the request's
// current state. It carries the job's GUID, never the request id or pool:
// that is what the service sends.
func (e *Emulator) eventPayloadLocked(r *request) wireEvent {
	org := e.orgURLLocked()
	project := org + "/" + e.projectID
	state, runState := StateWaiting, StateInProgress
	var result, start, finish, runFinish *string
	switch {
	case !r.finished.IsZero():
		state, runState = StateCompleted, StateCompleted
		result, finish, runFinish = ptr(r.result), ptr(wireTime(r.finished)), ptr(wireTime(r.finished))
		if !r.received.IsZero() {
			start = ptr(wireTime(r.received))
		}
	case !r.assigned.IsZero():
		state = StateInProgress
		start = ptr(wireTime(r.received))
	}
	runURL := fmt.Sprintf("%s/_build/results?buildId=%d", project, r.runID)
	pipeline := wireHookPipeline{
		URL: fmt.Sprintf("%s/_apis/Pipelines/%d?revision=1", project, r.definitionID),
		ID:  r.definitionID, Revision: 1, Name: r.name, Folder: "\\",
	}
	phrase := map[string]string{StateWaiting: "is waiting for an agent", StateInProgress: "started"}[state]
	if state == StateCompleted {
		phrase = r.result
	}
	msg := wireMessage{
		Text:     fmt.Sprintf("Run %s stage __default job %s %s.", r.runName, r.name, phrase),
		HTML:     fmt.Sprintf("Run %s stage __default job <a href=\"%s\">%s</a> %s.", r.runName, runURL, r.name, phrase),
		Markdown: fmt.Sprintf("Run %s stage __default job [%s](%s) %s.", r.runName, r.name, runURL, phrase),
	}
	containers := wireContainer{BaseURL: org + "/"}
	coll, acct, proj := containers, containers, containers
	coll.ID, acct.ID, proj.ID = e.collectionID, e.hostID, e.projectID
	return wireEvent{
		ID: newGUID(), EventType: eventType, PublisherID: "pipelines", Message: msg, DetailedMessage: msg,
		Resource: wireHookResource{
			Job: wireHookJob{
				Links: wireLinks{
					"web":          {Href: runURL},
					"pipeline.web": {Href: fmt.Sprintf("%s/_build/definition?definitionId=%d", project, r.definitionID)},
				},
				ID: r.jobID, Name: r.name, State: state, Result: result, StartTime: start, FinishTime: finish,
			},
			Stage: wireHookStage{
				ID: r.planID, Name: "__default", State: runState, Result: result, StartTime: start, FinishTime: finish,
			},
			Run: wireHookRun{
				Pipeline: pipeline, State: runState, Result: result, CreatedDate: wireTime(r.queued),
				FinishedDate: runFinish, ID: r.runID, Name: r.runName,
			},
			Pipeline:     pipeline,
			Repositories: []any{},
		},
		ResourceVersion:    resourceVersion,
		ResourceContainers: wireContainers{Collection: coll, Account: acct, Project: proj},
		CreatedDate:        wireTime(time.Now()),
	}
}

func ptr[T any](v T) *T { return &v }

// newGUID returns a random (version 4) GUID in the service's lower-case form.
func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
