package github

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentscaler/agentscaler/ci"
)

// GitHub's published test vector (docs: validating webhook deliveries).
const (
	vectorSecret  = "It's a Secret to Everybody"
	vectorPayload = "Hello, World!"
	vectorSig     = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
)

func TestSignatureVector(t *testing.T) {
	if got := Sign([]byte(vectorSecret), []byte(vectorPayload)); got != vectorSig {
		t.Fatalf("Sign = %s, want %s", got, vectorSig)
	}
	if !ValidSignature([]byte(vectorSecret), []byte(vectorPayload), vectorSig) {
		t.Fatal("the published vector does not verify")
	}
	for name, c := range map[string]struct{ secret, body, sig string }{
		"tampered body":     {vectorSecret, "Hello, World?", vectorSig},
		"appended body":     {vectorSecret, vectorPayload + " ", vectorSig},
		"empty body":        {vectorSecret, "", vectorSig},
		"other secret":      {"It's a Secret to Somebody", vectorPayload, vectorSig},
		"empty secret":      {"", vectorPayload, Sign(nil, []byte(vectorPayload))},
		"sha1 prefix":       {vectorSecret, vectorPayload, strings.Replace(vectorSig, "sha256=", "sha1=", 1)},
		"no prefix":         {vectorSecret, vectorPayload, strings.TrimPrefix(vectorSig, "sha256=")},
		"truncated mac":     {vectorSecret, vectorPayload, vectorSig[:len(vectorSig)-2]},
		"flipped last byte": {vectorSecret, vectorPayload, vectorSig[:len(vectorSig)-1] + "8"},
		"not hex":           {vectorSecret, vectorPayload, "sha256=zz"},
		"missing":           {vectorSecret, vectorPayload, ""},
	} {
		if ValidSignature([]byte(c.secret), []byte(c.body), c.sig) {
			t.Errorf("%s: accepted", name)
		}
	}
}

const queuedBody = `{"action":"queued","workflow_job":{"id":42,"run_id":7,"run_attempt":1,"status":"queued",
"labels":["self-hosted","Linux","gpu"],"runner_id":null,"runner_name":null,"runner_group_id":null,
"created_at":"2026-01-02T03:04:05Z"},"repository":{"full_name":"acme/app"},"organization":{"login":"acme"}}`

type events struct{ waiting, completed []ci.Event }

func (e *events) JobWaiting(ev ci.Event)   { e.waiting = append(e.waiting, ev) }
func (e *events) JobCompleted(ev ci.Event) { e.completed = append(e.completed, ev) }

func post(t *testing.T, h http.Handler, event, delivery, body, sig string) int {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/api/webhook/github", strings.NewReader(body))
	r.Header.Set(HeaderEvent, event)
	r.Header.Set(HeaderDelivery, delivery)
	if sig != "" {
		r.Header.Set(HeaderSignature, sig)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

func TestHookHandler(t *testing.T) {
	secret := []byte("s3cret")
	jobs := NewJobs(nil, JobsOptions{})
	jobs.AddPool("cpu", []string{"cpu"})
	jobs.AddPool("gpu", []string{"gpu"})
	var ev events
	h := NewHookHandler(secret, "acme", jobs, &ev, nil, nil, nil)
	sign := func(b string) string { return Sign(secret, []byte(b)) }

	if c := post(t, h, "workflow_job", "d1", queuedBody, Sign([]byte("wrong"), []byte(queuedBody))); c != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", c)
	}
	if c := post(t, h, "workflow_job", "d1", queuedBody+" ", sign(queuedBody)); c != http.StatusUnauthorized {
		t.Fatalf("tampered body: %d", c)
	}
	if c := post(t, h, "workflow_job", "d1", queuedBody, ""); c != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d", c)
	}
	if c := post(t, h, "ping", "p", `{"zen":"x"}`, sign(`{"zen":"x"}`)); c != http.StatusOK {
		t.Fatalf("ping: %d", c)
	}
	if c := post(t, h, "push", "p2", `{}`, sign(`{}`)); c != http.StatusAccepted {
		t.Fatalf("push: %d", c)
	}
	if c := post(t, h, "workflow_job", "bad", `{"action":"queued"}`, sign(`{"action":"queued"}`)); c != http.StatusBadRequest {
		t.Fatalf("no job: %d", c)
	}
	for range 2 { // a redelivery is dropped
		if c := post(t, h, "workflow_job", "d1", queuedBody, sign(queuedBody)); c != http.StatusOK {
			t.Fatalf("queued: %d", c)
		}
	}
	if len(ev.waiting) != 1 || ev.waiting[0].Ref != "42" || ev.waiting[0].System != ci.GitHub || len(ev.waiting[0].Pools) != 1 || ev.waiting[0].Pools[0] != "gpu" {
		t.Fatalf("waiting events %+v, want one for job 42 in pool gpu", ev.waiting)
	}
	if jobs.Len() != 1 {
		t.Fatalf("jobs held %d, want 1", jobs.Len())
	}
	other := strings.Replace(queuedBody, `"login":"acme"`, `"login":"evil"`, 1)
	if c := post(t, h, "workflow_job", "d2", other, sign(other)); c != http.StatusAccepted {
		t.Fatalf("other org: %d", c)
	}
	nopool := strings.Replace(strings.Replace(queuedBody, `"gpu"]`, `"tpu"]`, 1), `"id":42`, `"id":43`, 1)
	if c := post(t, h, "workflow_job", "d3", nopool, sign(nopool)); c != http.StatusAccepted || jobs.Len() != 1 {
		t.Fatalf("no pool: %d, held %d", c, jobs.Len())
	}
	started := strings.Replace(strings.Replace(queuedBody, `"queued"`, `"in_progress"`, 2), `"runner_name":null`, `"runner_name":"gpu-j42"`, 1)
	if c := post(t, h, "workflow_job", "d4", started, sign(started)); c != http.StatusOK || jobs.Len() != 0 {
		t.Fatalf("in_progress: %d, held %d", c, jobs.Len())
	}
	if id, ok := jobs.Holds("gpu-j42"); !ok || id != 42 {
		t.Fatalf("gpu-j42 holds %d %v", id, ok)
	}
	done := strings.Replace(started, `"in_progress"`, `"completed"`, 2)
	if c := post(t, h, "workflow_job", "d5", done, sign(done)); c != http.StatusOK || len(ev.completed) != 1 {
		t.Fatalf("completed: %d, %+v", c, ev.completed)
	}
	if _, ok := jobs.Holds("gpu-j42"); ok {
		t.Fatal("a completed job is still held")
	}
	r := httptest.NewRequest(http.MethodGet, "/api/webhook/github", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", w.Code)
	}
	if c := post(t, &HookHandler{Accept: h.Accept}, "ping", "p", `{}`, Sign(nil, []byte(`{}`))); c != http.StatusUnauthorized {
		t.Fatalf("no secret configured: %d", c)
	}
}

func FuzzParseHook(f *testing.F) {
	f.Add([]byte(queuedBody))
	f.Add([]byte(`{"action":"completed","workflow_job":{"id":1,"run_id":1,"labels":null},"repository":{"full_name":"a/b"}}`))
	f.Add([]byte(`{"action":"","workflow_job":{}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := ParseHook(body)
		if err != nil {
			return
		}
		if h.Action == "" || h.Job.ID <= 0 || h.Job.RunID <= 0 || !validRepo(h.Job.Repo) {
			t.Fatalf("parsed an incomplete hook: %+v", h)
		}
		jobs := NewJobs(nil, JobsOptions{})
		jobs.AddPool("p", []string{"x"})
		Dispatch(h, jobs, &events{})
		if jobs.Len() > 1 {
			t.Fatalf("one hook recorded %d jobs", jobs.Len())
		}
	})
}
