package github

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	gh "github.com/google/go-github/v88/github"

	"github.com/agentscaler/agentscaler/ci"
	"github.com/agentscaler/agentscaler/internal/hookhttp"
	"github.com/agentscaler/agentscaler/internal/logsafe"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// The webhook headers GitHub sends.
const (
	HeaderEvent     = "X-GitHub-Event"
	HeaderDelivery  = "X-GitHub-Delivery"
	HeaderSignature = "X-Hub-Signature-256"
)

// maxHookBody bounds a webhook body; GitHub caps payloads at 25 MB, but a
// workflow_job event is a few KiB.
const maxHookBody = 1 << 20

// maxDeliveryID bounds a delivery id (GitHub sends a GUID).
const maxDeliveryID = 128

// Sign returns the X-Hub-Signature-256 value of body under secret:
// sha256=<hex HMAC-SHA256>.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// ValidSignature reports whether header is body's signature under secret,
// comparing the MACs in constant time. An empty secret accepts nothing.
func ValidSignature(secret, body []byte, header string) bool {
	hexMAC, ok := strings.CutPrefix(header, "sha256=")
	if !ok || len(secret) == 0 {
		return false
	}
	got, err := hex.DecodeString(hexMAC)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// Hook is what the autoscaler reads from a workflow_job event.
type Hook struct {
	Action     string // queued, in_progress, completed, waiting
	Job        Job
	Org        string // the organization's login, empty for a user's repository
	RunAttempt int64
}

// ParseHook reads a workflow_job event body, in go-github's shape of it. It
// requires the action and the job's id, run id and repository.
func ParseHook(body []byte) (Hook, error) {
	var e gh.WorkflowJobEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return Hook{}, fmt.Errorf("workflow_job event: %w", err)
	}
	w := e.WorkflowJob
	switch {
	case e.Action == nil || *e.Action == "":
		return Hook{}, errors.New("workflow_job event: no action")
	case w == nil || w.GetID() <= 0 || w.GetRunID() <= 0:
		return Hook{}, errors.New("workflow_job event: no workflow_job id and run_id")
	case e.Repo == nil || !validRepo(e.Repo.GetFullName()):
		return Hook{}, errors.New("workflow_job event: no repository full_name owner/name")
	}
	h := Hook{Action: *e.Action, Job: jobOf(e.Repo.GetFullName(), w), RunAttempt: w.GetRunAttempt()}
	if e.Org != nil {
		h.Org = e.Org.GetLogin()
	}
	return h, nil
}

// validRepo reports whether s is owner/name.
func validRepo(s string) bool {
	owner, name, ok := strings.Cut(s, "/")
	return ok && owner != "" && name != "" && !strings.ContainsAny(name, "/?#%") && !strings.ContainsAny(owner, "?#%") && len(s) <= 200
}

// Scaler is what a webhook tells the scaler (azuredevops.Scaler's shape).
type Scaler = azuredevops.Scaler

// Dispatch records what a hook says in jobs and hands the scaler what it
// means: a job queued that a pool serves is a job waiting for that pool; a
// job completed, a job completed for the pool that served it. A job no pool
// serves concerns none; a job started changes nothing worth a pass. It
// reports whether any pool was concerned.
func Dispatch(h Hook, jobs *Jobs, s Scaler) bool {
	ref := strconv.FormatInt(h.Job.ID, 10)
	switch h.Action {
	case "queued":
		pool := jobs.Queued(h.Job)
		if pool == "" {
			return false
		}
		s.JobWaiting(ci.Event{System: ci.GitHub, Ref: ref, Pools: []string{pool}})
		return true
	case "in_progress":
		jobs.Started(h.Job.ID, h.Job.RunnerName)
		return jobs.Route(h.Job.Labels) != ""
	case "completed":
		jobs.Completed(h.Job.ID, h.Job.RunnerName)
		pool := jobs.Route(h.Job.Labels)
		if pool == "" {
			return false
		}
		s.JobCompleted(ci.Event{System: ci.GitHub, Ref: ref, Pools: []string{pool}})
		return true
	}
	return false
}

// Observe labels: a fixed set, never the raw event name.
const (
	eventLabelJob   = "workflow_job"
	eventLabelPing  = "ping"
	eventLabelOther = "other"
)

// HookHandler receives GitHub webhooks at POST /api/webhook/github.
//
// Answers: 405 for anything but POST; 413 over 1 MiB; 401 when the
// X-Hub-Signature-256 is missing or wrong (checked before anything is read
// from the body); 200 to ping; 202 for other events, for jobs of another
// organization and for jobs no pool serves; 400 for a workflow_job body that
// does not parse; 200 for a redelivered delivery id; 200 once dispatched.
type HookHandler struct {
	// Secret is the webhook secret; empty rejects every request.
	Secret []byte
	// Org, when set, is the organization served: events of another one
	// are answered 202 and dropped.
	Org string
	// Dedup drops redeliveries (same X-GitHub-Delivery); nil disables it.
	Dedup *azuredevops.Dedup
	// Accept takes a parsed workflow_job event and reports whether a pool
	// was concerned. Required.
	Accept func(ctx context.Context, h Hook) bool
	// Observe, when set, counts each hook: event is workflow_job, ping or
	// other; outcome is accepted, no_pool, duplicate, ignored,
	// other_organization, unauthorized, too_large, bad_request or
	// method_not_allowed.
	Observe func(event, outcome string)
	Logger  *slog.Logger
	Now     func() time.Time
}

// NewHookHandler is the webhook endpoint as serve runs it: signed with
// secret, redeliveries of the last hour dropped, events of other
// organizations than org (when set) ignored, queued jobs recorded in jobs
// and handed to s. lag, when set, is told how late each queued event came.
func NewHookHandler(secret []byte, org string, jobs *Jobs, s Scaler, lag func(time.Duration), observe func(event, outcome string), log *slog.Logger) *HookHandler {
	return &HookHandler{
		Secret: secret, Org: org, Dedup: azuredevops.NewDedup(10000, time.Hour),
		Accept: func(_ context.Context, h Hook) bool {
			if lag != nil && h.Action == "queued" && !h.Job.Created.IsZero() {
				lag(time.Since(h.Job.Created))
			}
			return Dispatch(h, jobs, s)
		},
		Observe: observe, Logger: log,
	}
}

func (h *HookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := hookhttp.Logger(h.Logger)
	if !hookhttp.Post(w, r, log, h.Observe, eventLabelOther) {
		return
	}
	body, ok := hookhttp.ReadBody(w, r, maxHookBody, log, h.Observe, eventLabelOther)
	if !ok {
		return
	}
	if !ValidSignature(h.Secret, body, r.Header.Get(HeaderSignature)) {
		hookhttp.Reply(w, log.With("remote", r.RemoteAddr), h.Observe, http.StatusUnauthorized, eventLabelOther, "unauthorized", "bad signature")
		return
	}
	event, delivery := r.Header.Get(HeaderEvent), r.Header.Get(HeaderDelivery)
	log = log.With("event", logsafe.Clip(event), "delivery", logsafe.Clip(delivery))
	switch event {
	case "ping":
		hookhttp.Reply(w, log, h.Observe, http.StatusOK, eventLabelPing, "accepted", "pong")
		return
	case "workflow_job":
	default:
		hookhttp.Reply(w, log, h.Observe, http.StatusAccepted, eventLabelOther, "ignored", "ignored: not a workflow_job event")
		return
	}
	if len(delivery) > maxDeliveryID {
		hookhttp.Reply(w, log, h.Observe, http.StatusBadRequest, eventLabelJob, "bad_request", "delivery id too long")
		return
	}
	hook, err := ParseHook(body)
	if err != nil {
		hookhttp.Reply(w, log, h.Observe, http.StatusBadRequest, eventLabelJob, "bad_request", err.Error())
		return
	}
	log = log.With("action", logsafe.Clip(hook.Action), "job", hook.Job.ID)
	if h.Org != "" && hook.Org != "" && !strings.EqualFold(hook.Org, h.Org) {
		log.Warn("webhook from another organization ignored", "organization", logsafe.Clip(hook.Org))
		hookhttp.Reply(w, log, h.Observe, http.StatusAccepted, eventLabelJob, "other_organization", "ignored: from another organization than the one served")
		return
	}
	if h.Dedup != nil && delivery != "" && h.Dedup.Seen(delivery, hookhttp.Now(h.Now)) {
		hookhttp.Reply(w, log, h.Observe, http.StatusOK, eventLabelJob, "duplicate", "already accepted")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	concerned := h.Accept(ctx, hook)
	if h.Dedup != nil && delivery != "" {
		h.Dedup.Remember(delivery, hookhttp.Now(h.Now))
	}
	if !concerned {
		hookhttp.Reply(w, log, h.Observe, http.StatusAccepted, eventLabelJob, "no_pool", "accepted: no pool serves these labels")
		return
	}
	hookhttp.Reply(w, log, h.Observe, http.StatusOK, eventLabelJob, "accepted", "accepted")
}
