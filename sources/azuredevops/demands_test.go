package azuredevops

import (
	"strings"
	"testing"
)

func TestParseDemand(t *testing.T) {
	tests := []struct {
		in   string
		want Demand
	}{
		{"maven", Demand{Name: "maven", Op: "exists"}},
		{"  docker  ", Demand{Name: "docker", Op: "exists"}},
		{"java -equals 17", Demand{Name: "java", Op: "equals", Value: "17"}},
		{"Agent.OS -equals Windows_NT", Demand{Name: "Agent.OS", Op: "equals", Value: "Windows_NT"}},
		{"Agent.Version -gtVersion 2.163.1", Demand{Name: "Agent.Version", Op: "gtVersion", Value: "2.163.1"}},
		{"VisualStudio_IDE -equals Visual Studio 2022", Demand{Name: "VisualStudio_IDE", Op: "equals", Value: "Visual Studio 2022"}},
		{"Agent.ComputerName -equals build-01", Demand{Name: "Agent.ComputerName", Op: "equals", Value: "build-01"}},
	}
	for _, tt := range tests {
		got, err := ParseDemand(tt.in)
		if err != nil {
			t.Errorf("ParseDemand(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseDemand(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseDemandErrors(t *testing.T) {
	tests := []struct {
		in       string
		contains []string
	}{
		{"java -foo 17", []string{`"java -foo 17"`, "-foo", "-equals", "-gtVersion"}},
		{"java -Equals 17", []string{"-Equals", "-equals"}}, // Azure DevOps matches operators case-sensitively
		{"java -equals", []string{"-equals", "needs a value"}},
		{"java 17", []string{`"java 17"`}},
		{"", []string{`""`}},
	}
	for _, tt := range tests {
		_, err := ParseDemand(tt.in)
		if err == nil {
			t.Errorf("ParseDemand(%q): no error", tt.in)
			continue
		}
		for _, s := range tt.contains {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("ParseDemand(%q) error %q does not mention %s", tt.in, err, s)
			}
		}
	}
}

func TestDemandSatisfiedBy(t *testing.T) {
	caps := map[string]string{
		"Agent.OS":      "Linux",
		"Agent.Version": "3.248.0",
		"maven":         "/usr/share/maven",
		"JAVA":          "17",
		"docker":        "",
		"node.js":       "20.11.1-nightly",
		"dotnet":        "8.0",
	}
	tests := []struct {
		demand string
		want   bool
	}{
		{"maven", true},
		{"MAVEN", true}, // names ignore case
		{"gradle", false},
		{"docker", true}, // an empty value still exists
		{"java -equals 17", true},
		{"java -equals 21", false},
		{"Agent.OS -equals linux", true}, // values ignore case
		{"Agent.OS -equals Windows_NT", false},
		{"gradle -equals 8", false},
		{"Agent.Version -gtVersion 2.163.1", true},
		{"Agent.Version -gtVersion 3.248.0", true},  // equal is enough
		{"Agent.Version -gtVersion 3.248.1", false}, // one patch too old
		{"Agent.Version -gtVersion 3.3.0", true},    // numeric, not lexical: 248 > 3
		{"Agent.Version -gtVersion 4.0", false},
		{"Agent.Version -gtVersion 3.248", true},        // missing part ranks lowest
		{"dotnet -gtVersion 8.0.0", false},              // as System.Version: 8.0 < 8.0.0
		{"node.js -gtVersion 20.9", true},               // suffix after '-' is cut
		{"node.js -gtVersion 20.11.2", false},           // 20.11.1 < 20.11.2
		{"Agent.Version -gtVersion latest", true},       // unparseable demand: any present version satisfies it, as in Azure DevOps
		{"missing -gtVersion 1.0", false},               // absent capability never satisfies
		{"maven -gtVersion 3.9", false},                 // a path is no version: ranks below any real one
		{"Agent.Version -gtVersion 2147483648.0", true}, // beyond Int32: unparseable like in .NET
	}
	for _, tt := range tests {
		d, err := ParseDemand(tt.demand)
		if err != nil {
			t.Fatalf("ParseDemand(%q): %v", tt.demand, err)
		}
		if got := d.SatisfiedBy(caps); got != tt.want {
			t.Errorf("%q satisfied by %v = %v, want %v", tt.demand, caps, got, tt.want)
		}
	}
}

func TestDemandSatisfiedByCaseCollision(t *testing.T) {
	// Two names differing in case: the exact one wins, otherwise the smallest.
	caps := map[string]string{"java": "11", "JAVA": "17", "Java": "21"}
	for demand, want := range map[string]bool{
		"java -equals 11": true,
		"JAVA -equals 17": true,
		"jAvA -equals 17": true, // "JAVA" < "Java" < "java"
		"jAvA -equals 21": false,
	} {
		d, err := ParseDemand(demand)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.SatisfiedBy(caps); got != want {
			t.Errorf("%q = %v, want %v", demand, got, want)
		}
	}
}

func TestSatisfies(t *testing.T) {
	caps := PoolCapabilities(map[string]string{"docker": "", "java": "17"}, "3.248.0")
	tests := []struct {
		name    string
		demands []string
		want    bool
		wantErr string
	}{
		{"no demands", nil, true, ""},
		{"all met", []string{"docker", "java -equals 17", "Agent.Version -gtVersion 2.163.1", "Agent.OS -equals Linux"}, true, ""},
		{"one unmet", []string{"docker", "maven"}, false, ""},
		{"windows job", []string{"Agent.OS -equals Windows_NT"}, false, ""},
		{"bad demand after unmet one", []string{"maven", "java -like 17"}, false, "-like"},
		{"bad demand with met ones", []string{"docker", "java -like 17"}, false, `"java -like 17"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Satisfies(caps, tt.demands)
			if got != tt.want {
				t.Errorf("Satisfies = %v, want %v", got, tt.want)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one mentioning %s", err, tt.wantErr)
			}
		})
	}
}

func TestPoolCapabilities(t *testing.T) {
	declared := map[string]string{"docker": "", "agent.version": "1.0.0"}
	caps := PoolCapabilities(declared, "3.248.0")
	want := map[string]string{"docker": "", "Agent.Version": "3.248.0", "Agent.OS": "Linux"}
	if len(caps) != len(want) {
		t.Fatalf("caps = %v, want %v", caps, want)
	}
	for k, v := range want {
		if got, ok := caps[k]; !ok || got != v {
			t.Errorf("caps[%q] = %q, %v; want %q", k, got, ok, v)
		}
	}
	if declared["agent.version"] != "1.0.0" || len(declared) != 2 {
		t.Errorf("declared map was modified: %v", declared)
	}

	// A declared OS stays, whatever its case; no version leaves the declared one.
	caps = PoolCapabilities(map[string]string{"agent.os": "Windows_NT", "Agent.Version": "4.255.0"}, "")
	if _, ok := caps["Agent.OS"]; ok {
		t.Errorf("Agent.OS added next to a declared agent.os: %v", caps)
	}
	if ok, _ := Satisfies(caps, []string{"Agent.OS -equals Windows_NT", "Agent.Version -gtVersion 4.0"}); !ok {
		t.Errorf("declared capabilities not honoured: %v", caps)
	}

	// Nil declared capabilities are fine.
	if caps := PoolCapabilities(nil, ""); len(caps) != 1 || caps["Agent.OS"] != "Linux" {
		t.Errorf("PoolCapabilities(nil) = %v", caps)
	}
}

func BenchmarkSatisfies(b *testing.B) {
	caps := PoolCapabilities(map[string]string{"docker": "", "java": "17", "maven": "/usr/share/maven", "node.js": "20.11.1"}, "3.248.0")
	demands := []string{"docker", "java -equals 17", "Agent.Version -gtVersion 2.163.1", "Agent.OS -equals Linux", "MAVEN"}
	for b.Loop() {
		if ok, err := Satisfies(caps, demands); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}
