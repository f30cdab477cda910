// Package github is GitHub Actions as the scaler sees it: self-hosted
// runners made just in time, one per queued job, named <pool>-j<job id>.
//
// GitHub's workflow_job webhook says which job is queued and with which
// labels, so the hook knows which pool serves it (Jobs.Route: the first pool
// in configuration order that offers every label). The queued jobs live in
// Jobs, shared by the system's pools: what hooks reported queued and not yet
// started, each checked still queued (GET job) before a runner is made for
// it, bounded and expiring, plus a bounded listing of the queued runs of the
// configured repositories, so a lost hook costs at most one timer interval.
// A runner gets its just-in-time configuration (a credential) when its
// instance is created (Source.JITConfig), through the provider's secrets.
package github

import (
	"slices"
	"strings"
)

// The labels GitHub gives every self-hosted runner: self-hosted, its
// operating system and its architecture. A pool whose labels name no OS is
// linux, none naming an architecture x64.
var (
	osLabels   = []string{"linux", "windows", "macos"}
	archLabels = []string{"x64", "arm", "arm64"}
)

// Offered returns the labels a pool's runners offer, lowercased and sorted:
// the pool's own labels, self-hosted, and the OS and architecture labels
// GitHub implies.
func Offered(pool []string) []string {
	out := []string{"self-hosted"}
	for _, l := range pool {
		if l = strings.ToLower(strings.TrimSpace(l)); l != "" {
			out = append(out, l)
		}
	}
	if !slices.ContainsFunc(out, func(l string) bool { return slices.Contains(osLabels, l) }) {
		out = append(out, "linux")
	}
	if !slices.ContainsFunc(out, func(l string) bool { return slices.Contains(archLabels, l) }) {
		out = append(out, "x64")
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Takes reports whether a runner offering the labels offered (as Offered
// returns them) would be given a job asking for labels: GitHub requires
// every label of the job, case-insensitively. A job asking for no label
// (runs-on: []) or only for a GitHub-hosted image is taken by nobody here.
func Takes(offered, labels []string) bool {
	if len(labels) == 0 {
		return false
	}
	for _, l := range labels {
		if !slices.Contains(offered, strings.ToLower(strings.TrimSpace(l))) {
			return false
		}
	}
	return true
}
