package azuredevops

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentscaler/agentscaler/internal/logsafe"
)

// The targets here take what reaches this package from outside: service
// hook bodies, demands and the REST answers of Azure DevOps. `go test` runs
// their seeds (real payload shapes); `go test -fuzz=Name` explores. None may
// panic, and what a caller posts must come back out (in an answer, an error
// or a log line) bounded.

// addHookSeeds adds every recorded service hook and a few broken shapes.
func addHookSeeds(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "hooks", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no hook fixtures: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `{"id":`, `{"id":"a","eventType":1}`,
		`{"id":"a","eventType":"ms.vss-pipelines.job-state-changed-event","resource":{"job":null,"run":{"pipeline":null}}}`,
		`{"id":"a","eventType":"ms.vss-pipelines.run-state-changed-event","resource":{"run":{"id":"x"}}}`,
		`{"id":"a","eventType":"ms.vss-pipelines.job-state-changed-event","createdDate":"yesterday"}`,
		`{"id":"a","eventType":"ms.vss-pipelines.job-state-changed-event","resourceContainers":{"collection":{"baseUrl":"https://server/tfs/C/"}}}`,
	} {
		f.Add([]byte(s))
	}
}

func FuzzParseEvent(f *testing.F) {
	addHookSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		e, err := ParseEvent(body)
		if err != nil {
			if len(err.Error()) > 2*logsafe.MaxLen+200 {
				t.Errorf("an error of %d bytes: %.200s", len(err.Error()), err)
			}
			return
		}
		if e.ID == "" || e.Type == "" || len(e.ID) > maxEventID {
			t.Errorf("parsed an event with id %q (%d bytes), type %q", logsafe.Clip(e.ID), len(e.ID), logsafe.Clip(e.Type))
		}
		// Every field is cut from the body: nothing grows beyond it.
		for _, s := range []string{e.ID, e.Type, e.State, e.Result, e.JobID, e.JobName, e.PipelineName, e.OrgURL, e.ProjectID} {
			if len(s) > len(body) {
				t.Errorf("a field of %d bytes from a body of %d", len(s), len(body))
			}
		}
		_ = Organization(e.OrgURL)
	})
}

func FuzzHookHandler(f *testing.F) {
	addHookSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		var logs bytes.Buffer
		h := &HookHandler{
			Auth:         func(*http.Request) bool { return true },
			Dedup:        NewDedup(16, time.Hour),
			Organization: "https://dev.azure.com/contoso",
			Accept:       func(context.Context, Event) error { return nil },
			Logger:       slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		}
		for range 2 { // the second delivery meets the first in Dedup
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/webhook/azuredevops", bytes.NewReader(body)))
			switch rec.Code {
			case http.StatusOK, http.StatusAccepted, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			default:
				t.Fatalf("status %d", rec.Code)
			}
			if rec.Body.Len() > 2*logsafe.MaxLen+200 {
				t.Errorf("an answer of %d bytes: %.200s", rec.Body.Len(), rec.Body.String())
			}
		}
		for line := range strings.Lines(logs.String()) {
			if len(line) > 1024 {
				t.Errorf("a log line of %d bytes: %.200s", len(line), line)
			}
		}
	})
}

func FuzzOrganization(f *testing.F) {
	for _, s := range [][2]string{
		{"https://dev.azure.com/contoso", "https://contoso.visualstudio.com/"},
		{"https://server/tfs/DefaultCollection", "http://SERVER:80/tfs/defaultcollection/"},
		{"http://[::1]:8080/contoso", "https://user:pw@dev.azure.com/x/y"},
		{"https://%zz", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ia := Organization(a)
		if SameOrganization(a, b) != SameOrganization(b, a) {
			t.Errorf("SameOrganization(%q, %q) is not symmetric", a, b)
		}
		if ia != "" && !SameOrganization(a, a) {
			t.Errorf("%q (%q) is not its own organization", a, ia)
		}
	})
}

func FuzzDemands(f *testing.F) {
	for _, d := range []string{
		"maven", "  docker  ", "java -equals 17", "Agent.OS -equals Windows_NT", "Agent.Version -gtVersion 2.163.1",
		"VisualStudio_IDE -equals Visual Studio 2022", "node.js -gtVersion 20.11.1-nightly", "java -foo 17",
		"java -equals", "java 17", "", "Agent.Version -gtVersion 99999999999999999999.1", "x -gtVersion 1.2.3.4.5",
	} {
		f.Add(d, "Agent.Version", "3.248.0")
	}
	f.Fuzz(func(t *testing.T, demand, capName, capValue string) {
		caps := PoolCapabilities(map[string]string{capName: capValue, "docker": ""}, "3.248.0")
		d, perr := ParseDemand(demand)
		ok, err := Satisfies(caps, []string{demand})
		if (perr == nil) != (err == nil) {
			t.Fatalf("ParseDemand(%q) = %v but Satisfies = %v", demand, perr, err)
		}
		if perr == nil && ok != d.SatisfiedBy(caps) {
			t.Errorf("Satisfies(%q) = %v, SatisfiedBy = %v", demand, ok, !ok)
		}
		if err != nil && ok {
			t.Errorf("a demand that does not parse is satisfied: %q", demand)
		}
	})
}

// answer is what the fuzzed Azure DevOps says to every call.
type answer struct {
	status     int
	retryAfter string
	body       []byte
}

func (a answer) RoundTrip(r *http.Request) (*http.Response, error) {
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
	if a.retryAfter != "" {
		h.Set("Retry-After", a.retryAfter)
		h.Set("X-RateLimit-Delay", a.retryAfter)
		h.Set("X-RateLimit-Remaining", a.retryAfter)
	}
	return &http.Response{
		StatusCode: a.status, Status: strconv.Itoa(a.status), Header: h, Request: r,
		Body: io.NopCloser(bytes.NewReader(a.body)), ContentLength: int64(len(a.body)),
	}, nil
}

func FuzzClientAnswers(f *testing.F) {
	queued := time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
	for _, body := range []string{
		clientPoolsJSON,
		clientJobRequestsJSON(clientJobRequest(4712, queued, ""), clientJobRequest(4711, queued, `,"reservedAgent":{"id":7,"name":"linux-r4711"}`)),
		clientAgentsJSON,
		clientResourceUsageJSON,
		`{"count":1,"value":[{"id":"twelve"}]}`,
		`{"count":0,"value":null}`,
	} {
		f.Add(200, "", []byte(body))
	}
	for _, e := range []struct {
		status int
		hint   string
		body   string
	}{
		{401, "", `{"$id":"1","innerException":null,"message":"TF400813: The user is not authorized to access this resource.","typeName":"Microsoft.TeamFoundation.Framework.Server.UnauthorizedRequestException","typeKey":"UnauthorizedRequestException","errorCode":0,"eventId":3000}`},
		{404, "", `{"message":"Agent pool 12 not found.","typeKey":"TaskAgentPoolNotFoundException"}`},
		{409, "", `{"message":"An agent named linux-placeholder already exists in the pool.","typeKey":"TaskAgentExistsException"}`},
		{429, "30", `{"message":"Request was blocked due to exceeding usage of resource 'Concurrency'."}`},
		{503, "Wed, 21 Oct 2015 07:28:00 GMT", `<html>Service Unavailable</html>`},
		{203, "", `<html>Sign in</html>`},
		{500, "99999999999999", ``},
	} {
		f.Add(e.status, e.hint, []byte(e.body))
	}
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte) {
		if status < 100 || status > 999 {
			return // not an HTTP status a server can send
		}
		c, err := NewClient("https://dev.azure.com/contoso", PAT(clientPAT), Options{
			HTTPClient: &http.Client{Transport: answer{status, retryAfter, body}},
			MaxRetries: -1,
			Logger:     slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		check := func(what string, err error) {
			if err == nil {
				return
			}
			if msg := err.Error(); len(msg) > maxErrorMessage+1024 {
				t.Errorf("%s: an error of %d bytes from an answer of %d: %.200s", what, len(msg), len(body), msg)
			}
			if strings.Contains(err.Error(), clientPAT) {
				t.Errorf("%s: the token is in the error", what)
			}
		}
		_, err = c.PoolID(ctx, "Default")
		check("PoolID", err)
		_, err = c.JobRequests(ctx, 12)
		check("JobRequests", err)
		_, err = c.Agents(ctx, 12)
		check("Agents", err)
		_, err = c.ResourceUsage(ctx)
		check("ResourceUsage", err)
		err = c.DeleteAgent(ctx, 12, 7)
		check("DeleteAgent", err)
	})
}
