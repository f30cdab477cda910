package sim

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// GenerateOptions shape a generated trace.
type GenerateOptions struct {
	Seed int64
	Days int // whole days from midnight; 0 means 1
	// RunsPerDay is the mean number of pipeline runs on a working day; each
	// run queues one job or fans out into several at once. 0 means 250,
	// about 700 jobs.
	RunsPerDay int
}

// Demands the generated jobs carry, with their share. The default pool
// capabilities (Agent.OS Linux and the agent version) satisfy all of them.
var generatedDemands = []struct {
	share   float64
	demands []string
}{
	{0.70, nil},
	{0.20, []string{"Agent.OS -equals Linux"}},
	{0.10, []string{"Agent.OS -equals Linux", "Agent.Version -gtVersion 3.220.0"}},
}

// Generate returns a realistic trace, the same for the same options:
// working-day arrivals (few at night, a morning and an afternoon peak, a
// lunch dip, quiet weekends from day 6), runs that fan out (most queue one
// job, some a handful, one in ten a burst of 8 to 20 parallel jobs), a
// nightly fan-out at 02:00, and run times with a long tail (a median of
// about 4 minutes, one job in twenty 20 to 60 minutes).
func Generate(opt GenerateOptions) []Job {
	days := max(opt.Days, 1)
	runs := opt.RunsPerDay
	if runs <= 0 {
		runs = 250
	}
	rng := rand.New(rand.NewPCG(uint64(opt.Seed), 0x5eed_a9e7))
	// Scale the intensity so a working day has `runs` runs on average.
	var area float64
	for m := 0; m < 24*60; m++ {
		area += intensity(float64(m) / 60)
	}
	perMinute := float64(runs) / area
	peak := perMinute * maxIntensity

	var jobs []Job
	for d := range days {
		day := time.Duration(d) * 24 * time.Hour
		weekend := d%7 == 5 || d%7 == 6
		// Thinning: a Poisson process at the peak rate, each arrival kept
		// with the share the hour's intensity has of the peak.
		for t := 0.0; ; {
			t += rng.ExpFloat64() / peak // minutes
			if t >= 24*60 {
				break
			}
			keep := intensity(t/60) / maxIntensity
			if weekend {
				keep *= 0.05
			}
			if rng.Float64() >= keep {
				continue
			}
			at := day + time.Duration(t*float64(time.Minute)).Round(time.Second)
			jobs = append(jobs, fanOut(rng, at, fanOutSize(rng))...)
		}
		jobs = append(jobs, fanOut(rng, day+2*time.Hour, 15)...)
	}
	slices.SortStableFunc(jobs, func(a, b Job) int { return cmp.Compare(a.QueuedAt, b.QueuedAt) })
	return jobs
}

// intensity is the relative arrival rate at hour h of a working day.
func intensity(h float64) float64 {
	bump := func(mid, width, height float64) float64 {
		return height * math.Exp(-(h-mid)*(h-mid)/(2*width*width))
	}
	return 0.03 + bump(10, 1.3, 1) + bump(14.5, 1.6, 0.9) + bump(16.8, 0.8, 0.35)
}

// maxIntensity bounds intensity from above, for thinning.
const maxIntensity = 1.2

func fanOutSize(rng *rand.Rand) int {
	switch p := rng.Float64(); {
	case p < 0.6:
		return 1
	case p < 0.9:
		return 2 + rng.IntN(3)
	default:
		return 8 + rng.IntN(13)
	}
}

// fanOut returns n jobs of one run, queued together: the jobs of a stage
// that has no dependencies between them are queued in the same second.
func fanOut(rng *rand.Rand, at time.Duration, n int) []Job {
	demands := pickDemands(rng)
	out := make([]Job, n)
	for i := range out {
		out[i] = Job{QueuedAt: at, Duration: runTime(rng), Demands: demands}
	}
	return out
}

func pickDemands(rng *rand.Rand) []string {
	p := rng.Float64()
	for _, d := range generatedDemands {
		if p < d.share {
			return d.demands
		}
		p -= d.share
	}
	return nil
}

// runTime draws a job's run time: log-normal around 4 minutes, with one job
// in twenty from a long tail of 20 to 60 minutes.
func runTime(rng *rand.Rand) time.Duration {
	var s float64
	if rng.Float64() < 0.05 {
		s = 1200 + rng.Float64()*2400
	} else {
		s = math.Exp(math.Log(240) + 0.6*rng.NormFloat64())
	}
	return time.Duration(max(math.Round(s), 10)) * time.Second
}
