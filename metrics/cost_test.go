package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAddAgentSeconds: the counter grows by time times agents per billed
// state, starts its series at 0, and has no offline series.
func TestAddAgentSeconds(t *testing.T) {
	m := New("test")
	m.AddAgentSeconds("linux", nil, 0)
	if got := testutil.CollectAndCount(m.agentSeconds); got != len(billedStates) {
		t.Fatalf("series after a pass of 0 s: %d, want %d at 0", got, len(billedStates))
	}
	m.AddAgentSeconds("linux", map[string]int{AgentStarting: 1, AgentIdle: 2, AgentBusy: 3, AgentOffline: 4}, time.Minute)
	m.AddAgentSeconds("linux", map[string]int{AgentIdle: 1, AgentBusy: -1, "exploded": 9}, 1500*time.Millisecond)
	m.AddAgentSeconds("linux", map[string]int{AgentIdle: 5}, -time.Hour) // clocks disagree: nothing
	for state, want := range map[string]float64{AgentStarting: 60, AgentIdle: 121.5, AgentBusy: 180} {
		if got := testutil.ToFloat64(m.agentSeconds.WithLabelValues("linux", state)); got != want {
			t.Errorf("agent_seconds_total{state=%q} = %v, want %v", state, got, want)
		}
	}
	if got := testutil.CollectAndCount(m.agentSeconds); got != len(billedStates) {
		t.Errorf("series = %d, want %d: offline and unknown states add none", got, len(billedStates))
	}
	m.ForgetPool("linux")
	if got := testutil.CollectAndCount(m.agentSeconds); got != 0 {
		t.Errorf("series after ForgetPool = %d", got)
	}
	var none *Metrics
	none.AddAgentSeconds("linux", map[string]int{AgentIdle: 1}, time.Second)
}
