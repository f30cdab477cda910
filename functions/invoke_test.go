package functions

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// timerInvocation is the request the Functions host posts to /reconcile when
// the "timer" timerTrigger of reconcile/function.json fires.
const timerInvocation = `{
  "Data": {
    "timer": {
      "Schedule": {"AdjustForDST": true},
      "ScheduleStatus": {
        "Last": "2024-01-01T09:59:00+00:00",
        "Next": "2024-01-01T10:01:00+00:00",
        "LastUpdated": "2024-01-01T09:59:00+00:00"
      },
      "IsPastDue": false
    }
  },
  "Metadata": {
    "sys": {
      "MethodName": "reconcile",
      "UtcNow": "2024-01-01T10:00:00.0183215Z",
      "RandGuid": "1b4e9d1e-6a3f-4d52-8f0c-2f3a5a1c9e77"
    }
  }
}`

// invocationAnswer decodes the handler's answer strictly against the
// custom-handler response shape.
func invocationAnswer(t *testing.T, body []byte) (outputs map[string]any, logs []string, returnValue json.RawMessage) {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, body)
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	if len(raw) != 3 || raw["Outputs"] == nil || raw["Logs"] == nil || raw["ReturnValue"] == nil {
		t.Fatalf("answer keys = %v, want exactly Outputs, Logs, ReturnValue", keys)
	}
	if err := json.Unmarshal(raw["Outputs"], &outputs); err != nil || outputs == nil {
		t.Fatalf("Outputs = %s, want an object", raw["Outputs"])
	}
	if err := json.Unmarshal(raw["Logs"], &logs); err != nil || logs == nil {
		t.Fatalf("Logs = %s, want an array of strings", raw["Logs"])
	}
	return outputs, logs, raw["ReturnValue"]
}

func TestReconcileInvocationSuccess(t *testing.T) {
	r := &fakeReconciler{pools: []string{"linux", "windows"}}
	h := NewHandler(Options{Reconciler: r, ReconcileTimeout: 30 * time.Second})

	before := time.Now()
	rec := do(t, h, "POST", "/reconcile", timerInvocation)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	outputs, logs, ret := invocationAnswer(t, rec.Body.Bytes())
	if len(outputs) != 0 {
		t.Errorf("Outputs = %v, want {}", outputs)
	}
	if string(ret) != "null" {
		t.Errorf("ReturnValue = %s, want null", ret)
	}
	if want := []string{"pool linux: ok", "pool windows: ok"}; !reflect.DeepEqual(logs, want) {
		t.Errorf("Logs = %q, want %q", logs, want)
	}
	if r.Calls() != 1 {
		t.Errorf("RunAll called %d times, want 1", r.Calls())
	}
	r.mu.Lock()
	deadline := r.deadline
	r.mu.Unlock()
	if deadline.IsZero() || deadline.After(before.Add(30*time.Second).Add(time.Second)) {
		t.Errorf("RunAll deadline = %v, want one within ReconcileTimeout of the request", deadline)
	}
}

func TestReconcileInvocationFailedPool(t *testing.T) {
	r := &fakeReconciler{
		pools: []string{"linux", "windows"},
		errs:  map[string]error{"windows": errors.New("list job requests: 503 Service Unavailable")},
	}
	h := NewHandler(Options{Reconciler: r})

	rec := do(t, h, "POST", "/reconcile", timerInvocation)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500 so the host records a failure", rec.Code)
	}
	outputs, logs, ret := invocationAnswer(t, rec.Body.Bytes())
	if len(outputs) != 0 || string(ret) != "null" {
		t.Errorf("Outputs = %v, ReturnValue = %s", outputs, ret)
	}
	want := []string{"pool linux: ok", "pool windows: failed: list job requests: 503 Service Unavailable"}
	if !reflect.DeepEqual(logs, want) {
		t.Errorf("Logs = %q, want %q", logs, want)
	}
}

func TestReconcileInvocationPastDueAsString(t *testing.T) {
	// Some host versions hand the timer binding over as a JSON string.
	body := `{"Data":{"timer":"{\"Schedule\":{\"AdjustForDST\":true},\"ScheduleStatus\":null,\"IsPastDue\":true}"},` +
		`"Metadata":{"sys":{"MethodName":"reconcile","UtcNow":"2024-01-01T10:03:12Z","RandGuid":"0d7c0c5e-2a41-4c1f-8a57-3f1e2d6b9a10"}}}`
	r := &fakeReconciler{pools: []string{"linux"}}
	rec := do(t, NewHandler(Options{Reconciler: r}), "POST", "/reconcile", body)
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
	}
	_, logs, _ := invocationAnswer(t, rec.Body.Bytes())
	if want := []string{"timer is past due", "pool linux: ok"}; !reflect.DeepEqual(logs, want) {
		t.Errorf("Logs = %q, want %q", logs, want)
	}
}

func TestReconcileInvocationBadPayload(t *testing.T) {
	for name, body := range map[string]string{
		"not json":      `{"Data":`,
		"timer not obj": `{"Data":{"timer":42},"Metadata":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := &fakeReconciler{pools: []string{"linux"}}
			rec := do(t, NewHandler(Options{Reconciler: r}), "POST", "/reconcile", body)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400", rec.Code)
			}
			_, logs, _ := invocationAnswer(t, rec.Body.Bytes())
			if len(logs) != 1 || !strings.HasPrefix(logs[0], "bad invocation payload: ") {
				t.Errorf("Logs = %q", logs)
			}
			if r.Calls() != 0 {
				t.Errorf("RunAll ran on a bad payload")
			}
		})
	}
}

func TestReconcileInvocationEmptyBodyAndNoPools(t *testing.T) {
	r := &fakeReconciler{}
	rec := do(t, NewHandler(Options{Reconciler: r}), "POST", "/reconcile", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d; body %s", rec.Code, rec.Body)
	}
	_, logs, _ := invocationAnswer(t, rec.Body.Bytes())
	if want := []string{"no pools configured"}; !reflect.DeepEqual(logs, want) {
		t.Errorf("Logs = %q, want %q", logs, want)
	}
	if r.Calls() != 1 {
		t.Errorf("RunAll called %d times, want 1", r.Calls())
	}
}
