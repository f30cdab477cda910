package bbemu

import (
	"net/http"
	"slices"
	"strings"
)

// StepJSON is what /emu/runner/poll hands a runner: the step to run and
// how long it runs.
type StepJSON struct {
	UUID      string `json:"uuid"`
	RunMillis int64  `json:"run_ms"`
}

// runnerOf returns the runner the request's bearer token was issued to.
func (e *Emulator) runnerOf(r *http.Request) *runner {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil
	}
	return e.runners[e.tokens[tok]]
}

// poll is the runner's heartbeat: the runner is online for OfflineAfter
// after it, and an idle, enabled runner is handed the oldest queued step
// whose runs-on labels it carries. 204 when there is none; 401 once the
// runner is deleted, which ends the stand-in runner.
func (e *Emulator) poll(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked()
	rn := e.runnerOf(r)
	if rn == nil {
		writeError(w, http.StatusUnauthorized, "runner unknown or deleted")
		return
	}
	e.pollLocked(rn)
	if rn.Step == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, StepJSON{UUID: rn.Step.UUID, RunMillis: rn.Step.Runs.Milliseconds()})
}

// complete ends the runner's step.
func (e *Emulator) complete(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rn := e.runnerOf(r)
	if rn == nil {
		writeError(w, http.StatusUnauthorized, "runner unknown or deleted")
		return
	}
	if rn.Step == nil || !sameUUID(rn.Step.UUID, r.PathValue("step")) {
		writeError(w, http.StatusConflict, "the runner does not run that step")
		return
	}
	now := e.now()
	rn.Step.Done = now
	rn.Step, rn.stateChanged, rn.LastSeen = nil, now, now
	rn.StepsRun++
	w.WriteHeader(http.StatusNoContent)
}

func subset(want, have []string) bool {
	for _, l := range want {
		if !slices.Contains(have, l) {
			return false
		}
	}
	return true
}

// pollLocked marks the runner seen and hands an idle, enabled one the
// oldest queued step its labels meet.
func (e *Emulator) pollLocked(rn *runner) {
	now := e.now()
	if rn.LastSeen.IsZero() || now.Sub(rn.LastSeen) > e.opts.OfflineAfter {
		rn.stateChanged = now
	}
	rn.LastSeen = now
	if rn.Step == nil && !rn.Disabled {
		for _, s := range e.steps {
			if s.Assigned.IsZero() && !s.Failed && subset(s.Labels, rn.Labels) {
				s.Assigned, s.Runner, s.RunnerLabels = now, rn.Name, slices.Clone(rn.Labels)
				rn.Step, rn.stateChanged = s, now
				break
			}
		}
	}
}

// Poll does what a runner's poll does, for tests without a runner process,
// and returns the uuid of the step the runner runs ("" for none).
func (e *Emulator) Poll(uuid string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked()
	for _, rn := range e.runners {
		if sameUUID(rn.UUID, uuid) {
			e.pollLocked(rn)
			if rn.Step != nil {
				return rn.Step.UUID
			}
		}
	}
	return ""
}
