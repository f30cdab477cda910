// Package providers defines how the scaler starts, lists and removes agent
// instances, independent of where they run. A provider is a leaf: it knows
// containers, never Azure DevOps.
package providers

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Provider runs single-use agent instances. Implementations must be safe for
// concurrent use: several reconciles may call them at once.
type Provider interface {
	// Create starts an agent instance. It is idempotent on spec.Name: if that
	// instance exists, it returns it, with Existed set.
	Create(ctx context.Context, spec AgentSpec) (Instance, error)
	// List returns the instances this autoscaler created for the pool, in any state.
	List(ctx context.Context, pool string) ([]Instance, error)
	// Delete removes an instance and what it holds. Deleting a missing
	// instance is not an error.
	Delete(ctx context.Context, name string) error
}

// State is where an instance is in its life.
type State string

const (
	StatePending State = "pending" // accepted, not yet running (pulling, scheduling)
	StateRunning State = "running"
	StateExited  State = "exited" // ended with exit code 0
	StateFailed  State = "failed" // ended non-zero, or could not start
)

// Done reports whether the instance has ended.
func (s State) Done() bool { return s == StateExited || s == StateFailed }

// AgentSpec is what the scaler asks a provider to start.
type AgentSpec struct {
	Name    string // instance name, also the agent's name in Azure DevOps
	Pool    string // the pool key from the configuration
	Request int64  // the job request it is made for, 0 for a warm agent
	Slot    int    // the warm slot (1..min_idle), 0 for a request agent

	Image    string
	CPU      float64 // cores; 0 leaves the provider default
	MemoryMB int64   // 0 leaves the provider default
	Env      map[string]string
	// Secrets are environment values that must travel through the provider's
	// secret mechanism (ACI secure value, Kubernetes Secret, a mounted file)
	// and must never be logged or written into a visible spec.
	Secrets map[string]string
}

// Instance is one agent instance as the provider sees it.
type Instance struct {
	Name     string
	Pool     string
	Request  int64
	Slot     int
	State    State
	ExitCode int
	// Reason explains a failed state in the provider's words (image pull
	// error, OOM kill), empty otherwise.
	Reason   string
	Created  time.Time
	Started  time.Time // zero until running
	Finished time.Time // zero until done
	// Existed is set by Create when the instance was there before the call
	// (an earlier create, or another process's): no new instance was made,
	// so it is not counted as one. List leaves it false.
	Existed bool
}

// Label keys carried by every instance (Docker labels, Kubernetes labels, ACI tags).
const (
	LabelManaged = "agentscaler.io/managed"
	LabelPool    = "agentscaler.io/pool"
	LabelRequest = "agentscaler.io/request"
	LabelSlot    = "agentscaler.io/slot"
)

// Labels returns the labels every provider attaches to the instance.
func Labels(spec AgentSpec) map[string]string {
	l := map[string]string{LabelManaged: "true", LabelPool: spec.Pool}
	if spec.Request > 0 {
		l[LabelRequest] = strconv.FormatInt(spec.Request, 10)
	}
	if spec.Slot > 0 {
		l[LabelSlot] = strconv.Itoa(spec.Slot)
	}
	return l
}

// FromLabels fills the pool, request and slot of an instance from its labels.
// It reports false when the labels do not mark an instance of ours.
func FromLabels(labels map[string]string, in *Instance) bool {
	if labels[LabelManaged] != "true" || labels[LabelPool] == "" {
		return false
	}
	in.Pool = labels[LabelPool]
	in.Request, _ = strconv.ParseInt(labels[LabelRequest], 10, 64)
	in.Slot, _ = strconv.Atoi(labels[LabelSlot])
	return true
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// MaxNameLen bounds instance names: a DNS label, a Kubernetes object name, an
// ACI container group name and an Azure DevOps agent name all fit.
const MaxNameLen = 63

// ValidateName reports why name cannot be an instance name, or nil.
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLen {
		return fmt.Errorf("instance name %q: must be 1 to %d characters", name, MaxNameLen)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("instance name %q: only lowercase letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// Error is a provider failure, classified so the scaler knows whether to try
// again. Providers wrap their SDK errors in it; anything else is treated as
// retryable, because an unknown error is more often transient than not.
type Error struct {
	Op         string        // create, list, delete
	Name       string        // instance or pool
	Retryable  bool          // throttling, 5xx, timeouts, conflicts that settle
	RetryAfter time.Duration // the server's hint, 0 when none
	Reason     string        // short machine-friendly cause: throttled, quota, image, auth, conflict, ...
	Err        error
}

func (e *Error) Error() string {
	kind := "permanent"
	if e.Retryable {
		kind = "retryable"
	}
	return fmt.Sprintf("%s %s: %s (%s): %v", e.Op, e.Name, e.Reason, kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Classification describes the failure (see Classified).
func (e *Error) Classification() (retryable bool, after time.Duration, reason string) {
	return e.Retryable, e.RetryAfter, e.Reason
}

// Classified is an error that describes itself: whether it is worth
// retrying, after how long at least (0 when the server gave no hint), and a
// short reason for metrics and logs. Error implements it, and so may any
// other package's errors (Azure DevOps') without importing this one.
type Classified interface {
	error
	Classification() (retryable bool, after time.Duration, reason string)
}

// Classify returns whether err is worth retrying, after how long at least,
// and a short reason for metrics and logs: the description of the first
// Classified error in err's chain; else a timeout (retryable), a
// cancellation (not), or an unknown error, taken as retryable.
func Classify(err error) (retryable bool, after time.Duration, reason string) {
	if err == nil {
		return false, 0, ""
	}
	var c Classified
	if errors.As(err, &c) {
		return c.Classification()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true, 0, "timeout"
	}
	if errors.Is(err, context.Canceled) {
		return false, 0, "canceled"
	}
	return true, 0, "unknown"
}
