package hookhttp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestReadBodyAndReply(t *testing.T) {
	var got []string
	observe := func(event, outcome string) { got = append(got, event+"/"+outcome) }
	for _, c := range []struct {
		body   string
		ok     bool
		status int
		want   string
	}{
		{"short", true, 0, ""},
		{strings.Repeat("x", 11), false, http.StatusRequestEntityTooLarge, "ev/too_large"},
	} {
		got = nil
		w := httptest.NewRecorder()
		body, ok := ReadBody(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(c.body)), 10, Logger(nil), observe, "ev")
		if ok != c.ok || (ok && string(body) != c.body) {
			t.Errorf("%q: ReadBody = %q, %v", c.body, body, ok)
		}
		if !ok && (w.Code != c.status || len(got) != 1 || got[0] != c.want || w.Header().Get("X-Content-Type-Options") != "nosniff") {
			t.Errorf("%q: answered %d %v %v, want %d %s", c.body, w.Code, got, w.Header(), c.status, c.want)
		}
	}
	fixed := time.Unix(42, 0)
	if Now(func() time.Time { return fixed }) != fixed || Now(nil).IsZero() {
		t.Error("Now does not use the clock given, or the wall clock without one")
	}
}
