package bbemu

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (e *Emulator) routes() {
	m := http.NewServeMux()
	m.HandleFunc("POST /site/oauth2/access_token", e.token)
	for _, base := range []string{"/internal/workspaces/{ws}/pipelines-config/runners", "/internal/repositories/{ws}/{repo}/pipelines-config/runners"} {
		m.HandleFunc("GET "+base, e.api(e.list))
		m.HandleFunc("POST "+base, e.api(e.create))
		m.HandleFunc("GET "+base+"/{runner}", e.api(e.get))
		m.HandleFunc("DELETE "+base+"/{runner}", e.api(e.remove))
		m.HandleFunc("PUT "+base+"/{runner}/state", e.api(e.setState))
	}
	m.HandleFunc("POST /emu/runner/poll", e.poll)
	m.HandleFunc("POST /emu/runner/steps/{step}/complete", e.complete)
	e.mux = m
}

// runnerJSON is a runner in Bitbucket's shape.
type runnerJSON struct {
	UUID      string       `json:"uuid"`
	Name      string       `json:"name"`
	Labels    []string     `json:"labels"`
	State     stateJSON    `json:"state"`
	CreatedOn time.Time    `json:"created_on"`
	UpdatedOn time.Time    `json:"updated_on"`
	OAuth     *oauthClient `json:"oauth_client,omitempty"`
}

type stateJSON struct {
	Status    string    `json:"status"`
	UpdatedOn time.Time `json:"updated_on"`
	Cordoned  bool      `json:"cordoned"`
	Step      *stepRef  `json:"step,omitempty"`
}

type stepRef struct {
	UUID string `json:"uuid"`
}

type oauthClient struct {
	ID            string `json:"id"`
	Secret        string `json:"secret"`
	TokenEndpoint string `json:"token_endpoint"`
	Audience      string `json:"audience"`
}

func (e *Emulator) toJSON(r *runner) runnerJSON {
	j := runnerJSON{UUID: r.UUID, Name: r.Name, Labels: slices.Clone(r.Labels), CreatedOn: r.Created, UpdatedOn: r.Updated,
		State: stateJSON{Status: e.status(r), UpdatedOn: r.stateChanged}}
	if r.Step != nil {
		j.State.Step = &stepRef{UUID: r.Step.UUID}
	}
	return j
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"type": "error", "error": map[string]string{"message": msg}})
}

// api authenticates an API call, applies throttling and counts it; the
// handler runs with e.mu held.
func (e *Emulator) api(h func(w http.ResponseWriter, r *http.Request, loc Location)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.calls[r.Method+" "+r.Pattern]++
		if !e.authorizedLocked(r) {
			writeError(w, http.StatusUnauthorized, "Access token expired or invalid")
			return
		}
		if e.throttle.n > 0 {
			e.throttle.n--
			w.Header().Set("Retry-After", strconv.Itoa(int(e.throttle.after.Seconds())))
			writeError(w, http.StatusTooManyRequests, "Rate limit for this resource has been exceeded")
			return
		}
		e.expireLocked()
		h(w, r, Location{Workspace: r.PathValue("ws"), Repository: r.PathValue("repo")})
	}
}

func (e *Emulator) authorizedLocked(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
		return (e.opts.Token != "" && tok == e.opts.Token) || e.tokens[tok] == "api"
	}
	return false
}

// token is the OAuth client credentials grant: the autoscaler's consumer
// gets an API token, a runner's OAuth client a runner token.
func (e *Emulator) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok {
		_ = r.ParseForm()
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	principal := ""
	if e.opts.ClientID != "" && id == e.opts.ClientID && secret == e.opts.ClientSecret {
		principal = "api"
	}
	for _, rn := range e.runners {
		if id == rn.ClientID && secret == rn.Secret {
			principal = rn.UUID
		}
	}
	if principal == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client", "error_description": "Invalid OAuth client credentials"})
		return
	}
	tok := strings.Trim(newUUID(), "{}")
	e.tokens[tok] = principal
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": 7200, "scopes": "runner"})
}

func sameUUID(a, b string) bool { return strings.Trim(a, "{}") == strings.Trim(b, "{}") }

func (l Location) matches(o Location) bool {
	return sameUUID(l.Workspace, o.Workspace) && sameUUID(l.Repository, o.Repository)
}

func (e *Emulator) list(w http.ResponseWriter, r *http.Request, loc Location) {
	var all []*runner
	for _, rn := range e.runners {
		if rn.matches(loc) {
			all = append(all, rn)
		}
	}
	slices.SortFunc(all, func(a, b *runner) int { return a.Created.Compare(b.Created)*2 + strings.Compare(a.UUID, b.UUID) })
	pagelen := 10
	if n, err := strconv.Atoi(r.URL.Query().Get("pagelen")); err == nil && n > 0 {
		pagelen = min(n, 100)
	}
	pg := 1
	if n, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && n > 0 {
		pg = n
	}
	start, end := min((pg-1)*pagelen, len(all)), min(pg*pagelen, len(all))
	values := []runnerJSON{}
	for _, rn := range all[start:end] {
		values = append(values, e.toJSON(rn))
	}
	out := map[string]any{"pagelen": pagelen, "size": len(all), "page": pg, "values": values}
	if end < len(all) {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(pg+1))
		q.Set("pagelen", strconv.Itoa(pagelen))
		out["next"] = (&url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}).String()
	}
	writeJSON(w, http.StatusOK, out)
}

func (e *Emulator) create(w http.ResponseWriter, r *http.Request, loc Location) {
	var in struct {
		Name   string   `json:"name"`
		Labels []string `json:"labels"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&in); err != nil || in.Name == "" {
		writeError(w, http.StatusBadRequest, "name and labels are required")
		return
	}
	if !slices.Contains(in.Labels, "self.hosted") {
		writeError(w, http.StatusBadRequest, "runner labels must include self.hosted")
		return
	}
	n := 0
	for _, rn := range e.runners {
		if sameUUID(rn.Workspace, loc.Workspace) {
			n++
		}
	}
	if n >= e.opts.MaxRunners {
		writeError(w, http.StatusBadRequest, "The workspace has reached the maximum number of runners")
		return
	}
	rn := e.newRunnerLocked(loc, in.Name, in.Labels)
	j := e.toJSON(rn)
	j.OAuth = &oauthClient{ID: rn.ClientID, Secret: rn.Secret, TokenEndpoint: "http://" + r.Host + "/site/oauth2/access_token", Audience: "api.atlassian.com"}
	writeJSON(w, http.StatusOK, j)
}

func (e *Emulator) find(w http.ResponseWriter, r *http.Request, loc Location) *runner {
	for _, rn := range e.runners {
		if sameUUID(rn.UUID, r.PathValue("runner")) && rn.matches(loc) {
			return rn
		}
	}
	writeError(w, http.StatusNotFound, "Runner not found")
	return nil
}

func (e *Emulator) get(w http.ResponseWriter, r *http.Request, loc Location) {
	if rn := e.find(w, r, loc); rn != nil {
		writeJSON(w, http.StatusOK, e.toJSON(rn))
	}
}

func (e *Emulator) remove(w http.ResponseWriter, r *http.Request, loc Location) {
	rn := e.find(w, r, loc)
	if rn == nil {
		return
	}
	if rn.Step != nil {
		rn.Step.Failed, rn.Step.Done = true, e.now()
	}
	delete(e.runners, rn.UUID)
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) setState(w http.ResponseWriter, r *http.Request, loc Location) {
	rn := e.find(w, r, loc)
	if rn == nil {
		return
	}
	var in struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "status is required")
		return
	}
	switch in.Status {
	case "DISABLED":
		rn.Disabled = true
	case "ENABLED":
		rn.Disabled = false
	default:
		writeError(w, http.StatusBadRequest, "status must be DISABLED or ENABLED")
		return
	}
	rn.Updated, rn.stateChanged = e.now(), e.now()
	writeJSON(w, http.StatusOK, e.toJSON(rn))
}
