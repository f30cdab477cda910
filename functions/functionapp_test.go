package functions

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentscaler/agentscaler/metrics"
)

// The Functions host cannot run here; these tests read the app's own
// host.json and function.json files and check that every route the host
// would forward, and every invocation it would post, is one NewHandler serves.

type hostJSON struct {
	Version         string `json:"version"`
	ExtensionBundle struct {
		ID      string `json:"id"`
		Version string `json:"version"`
	} `json:"extensionBundle"`
	CustomHandler struct {
		Description struct {
			DefaultExecutablePath string   `json:"defaultExecutablePath"`
			Arguments             []string `json:"arguments"`
		} `json:"description"`
		EnableForwardingHTTPRequest bool `json:"enableForwardingHttpRequest"`
	} `json:"customHandler"`
	Extensions struct {
		HTTP struct {
			RoutePrefix *string `json:"routePrefix"`
		} `json:"http"`
	} `json:"extensions"`
}

type binding struct {
	Type      string   `json:"type"`
	Direction string   `json:"direction"`
	Name      string   `json:"name"`
	AuthLevel string   `json:"authLevel"`
	Methods   []string `json:"methods"`
	Route     string   `json:"route"`
	Schedule  string   `json:"schedule"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readHost(t *testing.T) hostJSON {
	t.Helper()
	var h hostJSON
	readJSON(t, filepath.Join("..", "host.json"), &h)
	return h
}

func TestHostJSON(t *testing.T) {
	h := readHost(t)
	if h.Version != "2.0" {
		t.Errorf("version = %q, want 2.0", h.Version)
	}
	if h.ExtensionBundle.ID != "Microsoft.Azure.Functions.ExtensionBundle" || !strings.HasPrefix(h.ExtensionBundle.Version, "[4.") {
		t.Errorf("extensionBundle = %+v, want the v4 bundle", h.ExtensionBundle)
	}
	d := h.CustomHandler.Description
	if d.DefaultExecutablePath != "agentscaler" || !slices.Equal(d.Arguments, []string{"serve"}) {
		t.Errorf("customHandler.description = %+v, want agentscaler serve", d)
	}
	if !h.CustomHandler.EnableForwardingHTTPRequest {
		t.Error("enableForwardingHttpRequest is off: the host would wrap HTTP requests and the webhook route would not see them")
	}
	if p := h.Extensions.HTTP.RoutePrefix; p == nil || *p != "api" {
		t.Errorf("extensions.http.routePrefix = %v, want api", p)
	}
}

// TestFunctionsMatchRoutes walks every functions/*/function.json.
func TestFunctionsMatchRoutes(t *testing.T) {
	prefix := *readHost(t).Extensions.HTTP.RoutePrefix
	files, err := filepath.Glob(filepath.Join("*", "function.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(filepath.Dir(f)))
	}
	slices.Sort(names)
	if want := []string{"metrics", "reconcile", "webhook"}; !slices.Equal(names, want) {
		t.Fatalf("functions = %v, want %v", names, want)
	}

	r := &fakeReconciler{pools: []string{"linux"}}
	h := NewHandler(Options{
		Hooks:      map[string]http.Handler{"azuredevops": &recordingHook{}},
		Metrics:    metrics.New("test").Handler(),
		Reconciler: r,
	})
	// What each route's path parameters are filled with.
	params := map[string]string{"{source}": "azuredevops"}

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			var fn struct {
				Bindings []binding `json:"bindings"`
			}
			readJSON(t, filepath.Join(name, "function.json"), &fn)
			var trigger *binding
			for i, b := range fn.Bindings {
				if strings.HasSuffix(b.Type, "Trigger") {
					if trigger != nil {
						t.Fatal("more than one trigger")
					}
					trigger = &fn.Bindings[i]
				}
			}
			if trigger == nil || trigger.Direction != "in" {
				t.Fatalf("no input trigger in %+v", fn.Bindings)
			}

			switch trigger.Type {
			case "httpTrigger":
				// Forwarding needs a pure HTTP function: the trigger and one http output.
				if len(fn.Bindings) != 2 || fn.Bindings[1].Type != "http" || fn.Bindings[1].Direction != "out" {
					t.Errorf("bindings = %+v, want httpTrigger + http out", fn.Bindings)
				}
				if trigger.Route == "" || len(trigger.Methods) == 0 {
					t.Fatalf("trigger needs a route and methods: %+v", trigger)
				}
				path := "/" + prefix + "/" + trigger.Route
				for k, v := range params {
					path = strings.ReplaceAll(path, k, v)
				}
				if strings.ContainsAny(path, "{}") {
					t.Fatalf("route %q has a parameter the test does not fill", trigger.Route)
				}
				for _, m := range trigger.Methods {
					rec := do(t, h, strings.ToUpper(m), path, jobWaitingHook)
					if rec.Code == http.StatusNotFound || rec.Code == http.StatusMethodNotAllowed {
						t.Errorf("%s %s (function %s) = %d: NewHandler does not serve it", strings.ToUpper(m), path, name, rec.Code)
					}
				}
			case "timerTrigger":
				if trigger.Name != timerBinding {
					t.Errorf("timer binding is named %q; the handler reads Data[%q]", trigger.Name, timerBinding)
				}
				if trigger.Schedule != "0 */1 * * * *" {
					t.Errorf("schedule = %q, want every minute", trigger.Schedule)
				}
				// The host posts non-HTTP invocations to /<function name>,
				// with the trigger's data under its binding name.
				body := strings.Replace(timerInvocation, `"IsPastDue": false`, `"IsPastDue": true`, 1)
				body = strings.Replace(body, `"timer": {`, `"`+trigger.Name+`": {`, 1)
				before := r.Calls()
				rec := do(t, h, "POST", "/"+name, body)
				if rec.Code != http.StatusOK {
					t.Fatalf("POST /%s = %d: %s", name, rec.Code, rec.Body)
				}
				_, logs, _ := invocationAnswer(t, rec.Body.Bytes())
				if len(logs) == 0 || logs[0] != "timer is past due" {
					t.Errorf("the %q binding's data was not read: Logs = %q", trigger.Name, logs)
				}
				if r.Calls() != before+1 {
					t.Error("the invocation did not reconcile")
				}
			default:
				t.Fatalf("unexpected trigger type %q", trigger.Type)
			}
		})
	}
}

func TestFunctionAuthLevels(t *testing.T) {
	want := map[string]string{
		"webhook": "anonymous", // the hook handler authenticates Azure DevOps itself
		"metrics": "function",  // the host checks the key before forwarding
	}
	for name, level := range want {
		var fn struct {
			Bindings []binding `json:"bindings"`
		}
		readJSON(t, filepath.Join(name, "function.json"), &fn)
		if got := fn.Bindings[0].AuthLevel; got != level {
			t.Errorf("%s authLevel = %q, want %q", name, got, level)
		}
	}
}
