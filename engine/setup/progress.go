package setup

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// meter prints the progress of one transfer. On a terminal it redraws one
// line with a carriage return; anywhere else (an SSH session whose output
// is piped into a log or another program) it prints a new line whenever 5 %
// more is done or a few seconds have passed, so that the log stays short
// yet shows the transfer is alive.
type meter struct {
	w        io.Writer
	label    string
	terminal bool
	// every is the longest silence between two lines off a terminal.
	every time.Duration
	now   func() time.Time

	lastAt   time.Time
	lastStep int64 // 5 % steps done at the last line; -1 before the first
	lastDone int64 // bytes shown on the last line; -1 before the first
	width    int   // length of the line drawn last on a terminal
}

// terminalRedraw is the least time between two redraws on a terminal.
const terminalRedraw = 200 * time.Millisecond

func newMeter(w io.Writer, label string, terminal bool, every time.Duration, now func() time.Time) *meter {
	if every <= 0 {
		every = 5 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &meter{w: w, label: label, terminal: terminal, every: every, now: now, lastStep: -1, lastDone: -1}
}

// update reports done of total bytes (total < 0: unknown) at rate bytes per
// second. final forces a report and ends a terminal line.
func (m *meter) update(done, total int64, rate float64, final bool) {
	if m.w == nil {
		return
	}
	t := m.now()
	step := int64(-1)
	if total > 0 {
		step = done * 20 / total
	}
	switch {
	case final && !m.terminal && done == m.lastDone:
		return // the line is already there (a 5 % step at 100 %)
	case final:
	case m.terminal:
		if t.Sub(m.lastAt) < terminalRedraw {
			return
		}
	default:
		dueByStep := total > 0 && step > m.lastStep
		if !dueByStep && t.Sub(m.lastAt) < m.every {
			return
		}
	}
	m.lastAt, m.lastStep, m.lastDone = t, step, done
	line := m.label + "  " + describe(done, total, rate)
	if !m.terminal {
		fmt.Fprintln(m.w, line)
		return
	}
	pad := ""
	if n := m.width - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	m.width = len(line)
	end := ""
	if final {
		end, m.width = "\n", 0
	}
	fmt.Fprint(m.w, "\r"+line+pad+end)
}

// describe formats "42%  2.9/6.9 GB  85.3 MB/s  eta 47s".
func describe(done, total int64, rate float64) string {
	var b strings.Builder
	if total > 0 {
		fmt.Fprintf(&b, "%3d%%  %s/%s", done*100/total, sizeIn(done, total), humanSize(total))
	} else {
		b.WriteString(humanSize(done))
	}
	fmt.Fprintf(&b, "  %.1f MB/s", rate/1e6)
	if total > 0 && rate > 0 && done < total {
		if eta := time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second); eta > 0 {
			fmt.Fprintf(&b, "  eta %s", eta)
		}
	}
	return b.String()
}

// humanSize writes n bytes in decimal units, as download speeds are quoted.
func humanSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// sizeIn writes n in the unit humanSize picks for ref, without the unit, so
// that "2.9/6.9 GB" reads as one quantity.
func sizeIn(n, ref int64) string {
	switch {
	case ref >= 1e9:
		return fmt.Sprintf("%.1f", float64(n)/1e9)
	case ref >= 1e6:
		return fmt.Sprintf("%.1f", float64(n)/1e6)
	case ref >= 1e3:
		return fmt.Sprintf("%.1f", float64(n)/1e3)
	}
	return fmt.Sprintf("%d", n)
}
