package ci

import "testing"

func TestNaming(t *testing.T) {
	gh := Naming{Job: "j"}
	if got := Requests.JobName("linux", 42); got != "linux-r42" {
		t.Errorf("Azure DevOps job name %q, want linux-r42 (deployments that run keep their names)", got)
	}
	if got := gh.JobName("linux", 42); got != "linux-j42" {
		t.Errorf("job name %q, want linux-j42", got)
	}
	if got := Requests.SlotName("linux", 3); got != "linux-w3" {
		t.Errorf("slot name %q, want linux-w3", got)
	}
	for _, tc := range []struct {
		n    Naming
		name string
		own  bool
	}{
		{Requests, "linux-r42", true},
		{Requests, "linux-w1", true},
		{Requests, "linux-j42", false},
		{gh, "linux-j42", true},
		{gh, "linux-r42", false},
		{Requests, "linux-placeholder", false},
		{Requests, "linux-r", false},
		{Requests, "linux-r4x", false},
		{Requests, "linux-2-r4", false}, // another pool's prefix
		{Requests, "xlinux-r4", false},
		{Requests, "build-vm", false},
	} {
		if got := tc.n.Own("linux")(tc.name); got != tc.own {
			t.Errorf("Naming{%q}.Own(linux)(%q) = %v, want %v", tc.n.Job, tc.name, got, tc.own)
		}
	}
}
