package adoemu

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

const testPAT = "pat-for-tests"

// newServed returns an emulator behind an httptest server on loopback and
// its organization URL.
func newServed(t *testing.T, opts Options) (*Emulator, string) {
	t.Helper()
	if opts.PAT == "" {
		opts.PAT = testPAT
	}
	if opts.RetryBase == 0 {
		opts.RetryBase = time.Millisecond
	}
	e := New(opts)
	srv := httptest.NewServer(e)
	e.SetServerURL(srv.URL)
	t.Cleanup(func() { srv.Close(); e.Close() })
	return e, e.OrgURL()
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// call makes one request with the given Authorization header ("" for none).
func call(t *testing.T, method, url, auth string, body io.Reader) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// getJSON GETs url with the test PAT, wants 200, and decodes into a map.
func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	status, _, b := call(t, http.MethodGet, url, basic("", testPAT), nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d, body %s", url, status, b)
	}
	return decode(t, b)
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

// values returns the "value" array of a {count, value} envelope, checking
// that count agrees.
func values(t *testing.T, env map[string]any) []map[string]any {
	t.Helper()
	wantKeys(t, "envelope", env, "count", "value")
	arr, ok := env["value"].([]any)
	if !ok {
		t.Fatalf("value is %T, want array", env["value"])
	}
	if int(env["count"].(float64)) != len(arr) {
		t.Fatalf("count %v but %d values", env["count"], len(arr))
	}
	out := make([]map[string]any, len(arr))
	for i, v := range arr {
		out[i] = v.(map[string]any)
	}
	return out
}

func wantKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: missing key %q (have %v)", what, k, sortedKeys(m))
		}
	}
}

func wantNoKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; ok {
			t.Errorf("%s: unexpected key %q = %v", what, k, m[k])
		}
	}
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// serviceDate is how the service writes dates: RFC 3339, UTC, Z, with up
// to seven fractional digits.
var serviceDate = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z$`)

func wantDate(t *testing.T, what string, v any) {
	t.Helper()
	s, ok := v.(string)
	if !ok || !serviceDate.MatchString(s) {
		t.Errorf("%s = %v, want a service date like 2022-11-21T16:42:52.7761408Z", what, v)
	}
}

var guidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func wantGUID(t *testing.T, what string, v any) {
	t.Helper()
	if s, ok := v.(string); !ok || !guidRE.MatchString(s) {
		t.Errorf("%s = %v, want a GUID", what, v)
	}
}

func obj(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	o, ok := m[key].(map[string]any)
	if !ok {
		t.Fatalf("%s is %T (%v), want object", key, m[key], m[key])
	}
	return o
}

func quiesce(t *testing.T, e *Emulator) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Quiesce(ctx); err != nil {
		t.Fatal(err)
	}
}

func path(org string, parts ...string) string {
	return org + "/_apis/distributedtask/" + strings.Join(parts, "/")
}
