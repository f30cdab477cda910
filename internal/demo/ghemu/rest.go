package ghemu

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Handler serves the REST calls and the runner protocol.
func (e *Emulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /repos/{owner}/{repo}/actions/jobs/{id}", e.count("get_job", e.getJob))
	mux.HandleFunc("GET /repos/{owner}/{repo}/actions/runs", e.count("list_queued_runs", e.listRuns))
	mux.HandleFunc("GET /repos/{owner}/{repo}/actions/runs/{run}/jobs", e.count("list_run_jobs", e.listRunJobs))
	mux.HandleFunc("GET /orgs/{org}/actions/runners", e.count("list_runners", e.listRunners))
	mux.HandleFunc("DELETE /orgs/{org}/actions/runners/{id}", e.count("remove_runner", e.removeRunner))
	mux.HandleFunc("POST /orgs/{org}/actions/runners/generate-jitconfig", e.count("generate_jitconfig", e.jitConfig))
	mux.HandleFunc("POST /_runner/acquire", e.asRunner(e.acquire))
	mux.HandleFunc("POST /_runner/complete", e.asRunner(e.complete))
	return mux
}

func (e *Emulator) count(op string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.calls[op]++
		n := 0
		for _, v := range e.calls {
			n += v
		}
		e.mu.Unlock()
		w.Header().Set("X-RateLimit-Limit", "5000")
		w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(max(5000-n, 0)))
		w.Header().Set("X-RateLimit-Used", strconv.Itoa(n))
		w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10))
		w.Header().Set("X-RateLimit-Resource", "core")
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") && !strings.HasPrefix(r.Header.Get("Authorization"), "token ") {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "Requires authentication"})
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
}

func (e *Emulator) getJob(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	j, ok := e.jobs[atoi(r.PathValue("id"))]
	if !ok || j.Repo != r.PathValue("owner")+"/"+r.PathValue("repo") {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, e.hookJob(j))
}

func (e *Emulator) listRuns(w http.ResponseWriter, r *http.Request) {
	repo := r.PathValue("owner") + "/" + r.PathValue("repo")
	status := r.URL.Query().Get("status")
	perPage := 30
	if n, err := strconv.Atoi(r.URL.Query().Get("per_page")); err == nil && n > 0 {
		perPage = min(n, 100)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var ids []int64
	for runID, jobs := range e.run {
		j := e.jobs[jobs[0]]
		if j.Repo == repo && (status == "" || j.Status == status) {
			ids = append(ids, runID)
		}
	}
	slices.Sort(ids)
	slices.Reverse(ids) // newest first, as GitHub lists them
	total := len(ids)
	ids = ids[:min(len(ids), perPage)]
	runs := []map[string]any{}
	for _, id := range ids {
		j := e.jobs[e.run[id][0]]
		runs = append(runs, map[string]any{"id": id, "status": j.Status, "run_attempt": 1, "name": "ci",
			"created_at": j.Created.Format(time.RFC3339), "repository": map[string]any{"full_name": repo}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"total_count": total, "workflow_runs": runs})
}

func (e *Emulator) listRunJobs(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids, ok := e.run[atoi(r.PathValue("run"))]
	if !ok {
		notFound(w)
		return
	}
	jobs := []map[string]any{}
	for _, id := range ids {
		jobs = append(jobs, e.hookJob(e.jobs[id]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(jobs), "jobs": jobs})
}

func (e *Emulator) runnerJSON(r *runner) map[string]any {
	status := "offline"
	if r.Online {
		status = "online"
	}
	labels := []map[string]any{}
	for i, l := range r.Labels {
		typ := "custom"
		if l == "self-hosted" || l == "linux" || l == "x64" {
			typ = "read-only"
		}
		labels = append(labels, map[string]any{"id": i + 1, "name": l, "type": typ})
	}
	return map[string]any{"id": r.ID, "name": r.Name, "os": "linux", "status": status, "busy": r.Busy, "ephemeral": true, "labels": labels, "runner_group_id": r.Group}
}

// listRunners pages by per_page and page, with a Link header as GitHub's.
func (e *Emulator) listRunners(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("org") != e.opt.Org {
		notFound(w)
		return
	}
	perPage, page := 30, 1
	if n, err := strconv.Atoi(r.URL.Query().Get("per_page")); err == nil && n > 0 {
		perPage = min(n, 100)
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && n > 0 {
		page = n
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var ids []int64
	for id := range e.rs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	from := min((page-1)*perPage, len(ids))
	to := min(from+perPage, len(ids))
	out := []map[string]any{}
	for _, id := range ids[from:to] {
		out = append(out, e.runnerJSON(e.rs[id]))
	}
	if to < len(ids) {
		u := *r.URL
		q := u.Query()
		q.Set("page", strconv.Itoa(page+1))
		u.RawQuery = q.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<%s%s>; rel="next"`, e.opt.URL, u.RequestURI()))
	}
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(ids), "runners": out})
}

func (e *Emulator) removeRunner(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id := atoi(r.PathValue("id"))
	rn, ok := e.rs[id]
	if !ok || r.PathValue("org") != e.opt.Org {
		notFound(w)
		return
	}
	if rn.Busy {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": fmt.Sprintf("Bad request - Runner %q is still running a job", rn.Name)})
		return
	}
	delete(e.rs, id)
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) jitConfig(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name          string   `json:"name"`
		RunnerGroupID int64    `json:"runner_group_id"`
		Labels        []string `json:"labels"`
		WorkFolder    string   `json:"work_folder"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Name == "" || len(req.Labels) == 0 {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": "Invalid request: name and labels are required"})
		return
	}
	if req.RunnerGroupID == 0 {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"message": "Invalid request: runner_group_id is required"})
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r.PathValue("org") != e.opt.Org {
		notFound(w)
		return
	}
	for _, x := range e.rs {
		if x.Name == req.Name {
			writeJSON(w, http.StatusConflict, map[string]any{"message": "Already exists - A runner with the name " + req.Name + " already exists."})
			return
		}
	}
	e.next++
	labels := []string{"self-hosted", "linux", "x64"}
	for _, l := range req.Labels {
		if l = strings.ToLower(l); !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	rn := &runner{ID: e.next, Name: req.Name, Labels: labels, Group: req.RunnerGroupID, Token: randHex(16)}
	e.rs[rn.ID] = rn
	cfg, _ := json.Marshal(JITConfig{URL: e.opt.URL, Token: rn.Token, Name: rn.Name})
	writeJSON(w, http.StatusCreated, map[string]any{
		"runner":             e.runnerJSON(rn),
		"encoded_jit_config": base64.StdEncoding.EncodeToString(cfg),
	})
}

// runnerOf returns the runner whose credential the request carries.
func (e *Emulator) runnerOf(r *http.Request) *runner {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "RemoteAuth ")
	for _, x := range e.rs {
		if tok != "" && x.Token == tok {
			return x
		}
	}
	return nil
}

// Acquire is the runner protocol's answer: the job taken, and how long to
// hold it.
type Acquire struct {
	JobID   int64 `json:"job_id"`
	Seconds int   `json:"seconds"`
}

// runnerCall is one call of the runner protocol's answer, made under the
// emulator's lock; hook, when set, is sent with action once it is released.
type runnerCall struct {
	status int
	body   any // JSON, nil for none
	hook   *JobState
	action string
}

// asRunner serves a runner protocol call: f gets, under the lock, the
// runner whose credential the request carries (401 when none).
func (e *Emulator) asRunner(f func(rn *runner) runnerCall) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		rn := e.runnerOf(r)
		if rn == nil {
			e.mu.Unlock()
			writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "unknown runner"})
			return
		}
		c := f(rn)
		e.mu.Unlock()
		if c.hook != nil {
			e.send(c.hook, c.action)
		}
		if c.body == nil {
			w.WriteHeader(c.status)
			return
		}
		writeJSON(w, c.status, c.body)
	}
}

// acquire brings the runner online and hands it the oldest queued job
// whose every label it carries (204 when none).
func (e *Emulator) acquire(rn *runner) runnerCall {
	rn.Online = true
	if rn.Busy {
		return runnerCall{status: http.StatusConflict, body: map[string]any{"message": "single-use runner already took a job"}}
	}
	var pick *JobState
	for _, j := range e.jobs {
		if j.Status == "queued" && carries(rn.Labels, j.Labels) && (pick == nil || j.ID < pick.ID) {
			pick = j
		}
	}
	if pick == nil {
		return runnerCall{status: http.StatusNoContent}
	}
	pick.Status, pick.RunnerName, pick.RunnerID, pick.Started = "in_progress", rn.Name, rn.ID, time.Now().UTC()
	pick.Runs++
	rn.Busy = true
	job := *pick
	return runnerCall{status: http.StatusOK, body: Acquire{JobID: job.ID, Seconds: int(e.opt.RunTime / time.Second)}, hook: &job, action: "in_progress"}
}

// complete finishes the runner's job and removes the runner, as GitHub
// removes a just-in-time runner after its job.
func (e *Emulator) complete(rn *runner) runnerCall {
	c := runnerCall{status: http.StatusNoContent}
	for _, j := range e.jobs {
		if j.RunnerID == rn.ID && j.Status == "in_progress" {
			j.Status = "completed"
			job := *j
			c.hook, c.action = &job, "completed"
		}
	}
	delete(e.rs, rn.ID)
	return c
}

func carries(runner, job []string) bool {
	for _, l := range job {
		if !slices.Contains(runner, strings.ToLower(l)) {
			return false
		}
	}
	return len(job) > 0
}

// Take asks for a job as the runner whose encoded JIT config is cfg, once,
// as a runner polls: the job it took, or ok false when none was handed.
func Take(cfg string) (a Acquire, ok bool, err error) {
	c, err := DecodeJITConfig(cfg)
	if err != nil {
		return Acquire{}, false, err
	}
	req, _ := http.NewRequest(http.MethodPost, strings.TrimSuffix(c.URL, "/")+"/_runner/acquire", nil)
	req.Header.Set("Authorization", "RemoteAuth "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Acquire{}, false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		err := json.NewDecoder(resp.Body).Decode(&a)
		return a, err == nil, err
	case http.StatusNoContent:
		return Acquire{}, false, nil
	}
	return Acquire{}, false, fmt.Errorf("acquire: %s", resp.Status)
}
