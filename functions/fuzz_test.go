package functions

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/metrics"
	"github.com/agentscaler/agentscaler/sources/azuredevops"
)

// The targets here take what the hosts hand this package: the Functions
// host's invocation payload and Lambda's events. `go test` runs the seeds
// (the recorded shapes in testdata); `go test -fuzz=Name` explores. None may
// panic, and every answer stays bounded whatever arrives.

// addFileSeeds adds the files matching pattern under testdata.
func addFileSeeds(f *testing.F, pattern string) {
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds match testdata/%s: %v", pattern, err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzInvocation(f *testing.F) {
	addFileSeeds(f, "functions-timer.json")
	for _, s := range []string{
		timerInvocation, ``, `{}`, `null`, `{"Data":{"timer":null}}`, `{"Data":{"timer":"{\"IsPastDue\":true}"}}`,
		`{"Data":{"timer":"not json"}}`, `{"Data":[],"Metadata":{"sys":{"MethodName":1}}}`, `{"Data":{"timer":{"IsPastDue":"yes"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := &fakeReconciler{pools: []string{"linux"}}
		rec := do(t, NewHandler(Options{Reconciler: r}), http.MethodPost, "/reconcile", string(body))
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var answer invocationResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("the answer is not the custom-handler shape: %v: %s", err, rec.Body)
		}
		if rec.Body.Len() > 4<<10 {
			t.Errorf("an answer of %d bytes: %.200s", rec.Body.Len(), rec.Body)
		}
		if ran := r.Calls() == 1; ran != (rec.Code == http.StatusOK) {
			t.Errorf("status %d, but RunAll ran %d times", rec.Code, r.Calls())
		}
	})
}

func FuzzLambdaInvoke(f *testing.F) {
	addFileSeeds(f, filepath.Join("lambda", "*.json"))
	f.Add([]byte(`{"requestContext":{"http":{"method":"POST","path":"/reconcile"}},"rawPath":"/reconcile"}`))
	f.Add([]byte(`{"requestContext":{"http":{"method":"GET"},"stage":"prod"},"rawPath":"/prod/api/metrics","isBase64Encoded":true,"body":"%%%"}`))
	f.Add([]byte(`{"detail-type":"Scheduled Event","source":"aws.scheduler"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		hook := &azuredevops.HookHandler{
			Auth:   azuredevops.BasicAuth("azdo", "s3cret"),
			Dedup:  azuredevops.NewDedup(16, time.Hour),
			Accept: func(context.Context, azuredevops.Event) error { return nil },
		}
		r := &fakeReconciler{pools: []string{"linux"}}
		l := &Lambda{
			Handler: NewHandler(Options{
				Hooks:   map[string]http.Handler{"azuredevops": hook},
				Metrics: metrics.New("fuzz").Handler(),
			}),
			Reconciler: r,
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		out, err := l.Invoke(ctx, payload)
		if err != nil {
			if len(err.Error()) > 4*len(payload)+1024 { // %q may quote a byte in four
				t.Errorf("an error of %d bytes from a payload of %d", len(err.Error()), len(payload))
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("the answer is not JSON: %.200s", out)
		}
		if len(out) > 2*maxLambdaResponse {
			t.Errorf("an answer of %d bytes", len(out))
		}
	})
}
