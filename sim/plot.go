package sim

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"sort"
	"strings"
	"time"
)

// Plot geometry, in SVG user units.
const (
	plotCols   = 960 // one column per unit of width
	plotHeight = 180
	plotLeft   = 60
	plotTop    = 30
	plotGap    = 60 // between panels: the title and the time axis
)

// layers are drawn stacked from the bottom, with the waiting jobs as a line
// over them.
var layers = []struct {
	name, color string
	value       func(Sample) int
}{
	{"busy", "#2b8a3e", func(s Sample) int { return s.Busy }},
	{"idle", "#f59f00", func(s Sample) int { return s.Idle }},
	{"starting", "#74c0fc", func(s Sample) int { return s.Starting }},
}

const waitingColor = "#e03131"

// WritePlot draws one panel per result: its agents by state (busy, idle,
// starting) stacked, and the jobs waiting, over the simulated time. Every
// panel shares the time and count scales, so panels compare at a glance.
// Each column shows the agents at its start and the most jobs waiting
// within it, so a short burst of waiting is never lost between columns.
func WritePlot(w io.Writer, results []Result) error {
	var window time.Duration
	top := 1
	for _, r := range results {
		window = max(window, r.Window)
		for _, s := range r.Timeline {
			top = max(top, s.Starting+s.Idle+s.Busy, s.Waiting)
		}
	}
	if window <= 0 {
		window = time.Hour
	}
	width := plotLeft + plotCols + 20
	height := plotTop + len(results)*(plotHeight+plotGap)
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	x := plotLeft
	for _, l := range layers {
		fmt.Fprintf(b, `<rect x="%d" y="8" width="12" height="12" fill="%s"/><text x="%d" y="18">%s agents</text>`+"\n", x, l.color, x+16, l.name)
		x += 130
	}
	fmt.Fprintf(b, `<line x1="%d" y1="14" x2="%d" y2="14" stroke="%s" stroke-width="2"/><text x="%d" y="18">waiting jobs</text>`+"\n", x, x+12, waitingColor, x+16)
	for i, r := range results {
		panel(b, r, plotTop+i*(plotHeight+plotGap)+20, window, top)
	}
	fmt.Fprintln(b, "</svg>")
	return b.Flush()
}

// panel draws one result with its top edge at y0.
func panel(b *bufio.Writer, r Result, y0 int, window time.Duration, top int) {
	at := func(c int) time.Duration { return time.Duration(float64(window) * float64(c) / plotCols) }
	yOf := func(v int) float64 { return float64(y0+plotHeight) - float64(v)*plotHeight/float64(top) }
	// Column states, from the timeline.
	state := make([]Sample, plotCols)
	waiting := make([]int, plotCols)
	for c := range plotCols {
		from, to := at(c), at(c+1)
		i := sort.Search(len(r.Timeline), func(i int) bool { return r.Timeline[i].At > from }) - 1
		if i >= 0 {
			state[c] = r.Timeline[i]
			waiting[c] = r.Timeline[i].Waiting
		}
		for j := i + 1; j < len(r.Timeline) && r.Timeline[j].At < to; j++ {
			waiting[c] = max(waiting[c], r.Timeline[j].Waiting)
		}
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", plotLeft, y0-6, html.EscapeString(r.Policy))
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#ced4da"/>`+"\n", plotLeft, y0, plotCols, plotHeight)
	// Stacked layers: each a polygon between the running totals.
	base := make([]int, plotCols)
	for _, l := range layers {
		var up, down strings.Builder
		for c := range plotCols {
			v := base[c] + l.value(state[c])
			fmt.Fprintf(&up, "%d,%.1f %d,%.1f ", plotLeft+c, yOf(v), plotLeft+c+1, yOf(v))
		}
		for c := plotCols - 1; c >= 0; c-- {
			fmt.Fprintf(&down, "%d,%.1f %d,%.1f ", plotLeft+c+1, yOf(base[c]), plotLeft+c, yOf(base[c]))
			base[c] += l.value(state[c])
		}
		fmt.Fprintf(b, `<polygon fill="%s" stroke="none" points="%s%s"/>`+"\n", l.color, up.String(), strings.TrimSpace(down.String()))
	}
	var line strings.Builder
	for c := range plotCols {
		fmt.Fprintf(&line, "%d,%.1f %d,%.1f ", plotLeft+c, yOf(waiting[c]), plotLeft+c+1, yOf(waiting[c]))
	}
	fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", waitingColor, strings.TrimSpace(line.String()))
	// Count scale at the left, time scale below.
	for _, v := range []int{0, top / 2, top} {
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%d</text>`+"\n", plotLeft-6, yOf(v)+4, v)
	}
	step := tickStep(window)
	for t := time.Duration(0); t <= window; t += step {
		xt := plotLeft + int(float64(plotCols)*float64(t)/float64(window))
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#adb5bd"/><text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n",
			xt, y0+plotHeight, xt, y0+plotHeight+4, xt, y0+plotHeight+16, clockLabel(t))
	}
}

// tickStep picks a time step that gives at most about a dozen ticks.
func tickStep(window time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 12 * time.Hour, 24 * time.Hour} {
		if window/s <= 12 {
			return s
		}
	}
	return 7 * 24 * time.Hour
}

// clockLabel writes a time from the start of the trace as [day ]hh:mm.
func clockLabel(t time.Duration) string {
	d := int(t / (24 * time.Hour))
	t -= time.Duration(d) * 24 * time.Hour
	s := fmt.Sprintf("%02d:%02d", int(t/time.Hour), int(t%time.Hour/time.Minute))
	if d > 0 {
		return fmt.Sprintf("d%d %s", d+1, s)
	}
	return s
}
