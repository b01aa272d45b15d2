// Package progress draws a one-line progress bar for long-running commands:
// count, percent, rate and estimated time left. On a terminal the line is
// rewritten in place with a carriage return; on anything else (a log file,
// a pipe) a plain line is printed every few seconds at most, so logs stay
// readable.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Bar is a progress bar. Its methods are safe for concurrent use; a nil
// *Bar does nothing.
type Bar struct {
	w        io.Writer
	total    int
	label    string
	terminal bool
	now      func() time.Time

	mu        sync.Mutex
	n         int
	start     time.Time
	lastDraw  time.Time
	done      bool
	lineWidth int
	status    string
}

// Redraw intervals: how often a terminal line is rewritten, and how often a
// plain line is printed at most (the final line is always printed).
const (
	terminalInterval = 100 * time.Millisecond
	plainInterval    = 5 * time.Second
)

// New returns a bar counting to total (0 or less when the total is not
// known) that writes to w, prefixing its line with label. Whether w is a
// terminal is detected for *os.File; set it with SetTerminal otherwise.
func New(w io.Writer, total int, label string) *Bar {
	b := &Bar{w: w, total: total, label: label, now: time.Now}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.terminal = true
		}
	}
	b.start = b.now()
	return b
}

// SetTerminal forces the terminal (in-place) or plain (line by line)
// style.
func (b *Bar) SetTerminal(on bool) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.terminal = on
	b.mu.Unlock()
}

// SetStatus sets a short text shown after the counts (e.g. the current
// loss); it appears at the next redraw.
func (b *Bar) SetStatus(s string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.status = s
	b.mu.Unlock()
}

// Add advances the bar by n.
func (b *Bar) Add(n int) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.n += n
	now := b.now()
	if b.terminal {
		if now.Sub(b.lastDraw) >= terminalInterval || (b.total > 0 && b.n >= b.total) {
			b.draw(now, false)
		}
		return
	}
	// Plain output: a line when plainInterval has passed since the last
	// one (or since the start), never one per update.
	last := b.lastDraw
	if last.IsZero() {
		last = b.start
	}
	if now.Sub(last) >= plainInterval && (b.total <= 0 || b.n < b.total) {
		b.draw(now, false)
	}
}

// Done draws the final state and ends the line. Further calls do nothing.
func (b *Bar) Done() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	b.draw(b.now(), true)
}

// draw writes the current line; the caller holds b.mu.
func (b *Bar) draw(now time.Time, final bool) {
	b.lastDraw = now
	line := b.line(now, final)
	if b.terminal {
		pad := ""
		if len(line) < b.lineWidth {
			pad = strings.Repeat(" ", b.lineWidth-len(line))
		}
		b.lineWidth = len(line)
		end := ""
		if final {
			end = "\n"
		}
		fmt.Fprintf(b.w, "\r%s%s%s", line, pad, end)
		return
	}
	fmt.Fprintln(b.w, line)
}

// line formats "label [=====>    ] 12/40  30%  2.5/s  ETA 11s".
func (b *Bar) line(now time.Time, final bool) string {
	elapsed := now.Sub(b.start)
	var sb strings.Builder
	if b.label != "" {
		sb.WriteString(b.label)
		sb.WriteString(" ")
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(b.n) / s
	}
	if b.total > 0 {
		frac := min(1, float64(b.n)/float64(b.total))
		const width = 20
		filled := int(frac * width)
		sb.WriteString("[" + strings.Repeat("=", filled))
		if filled < width {
			sb.WriteString(">" + strings.Repeat(" ", width-filled-1))
		}
		fmt.Fprintf(&sb, "] %d/%d %3.0f%%", b.n, b.total, 100*frac)
	} else {
		fmt.Fprintf(&sb, "%d", b.n)
	}
	fmt.Fprintf(&sb, " %s/s", formatRate(rate))
	switch {
	case final:
		fmt.Fprintf(&sb, " in %s", formatDuration(elapsed))
	case b.total > 0 && rate > 0 && b.n < b.total:
		fmt.Fprintf(&sb, " ETA %s", formatDuration(time.Duration(float64(b.total-b.n)/rate*float64(time.Second))))
	}
	if b.status != "" {
		sb.WriteString("  " + b.status)
	}
	return sb.String()
}

func formatRate(r float64) string {
	switch {
	case r >= 100:
		return fmt.Sprintf("%.0f", r)
	case r >= 10:
		return fmt.Sprintf("%.1f", r)
	}
	return fmt.Sprintf("%.2f", r)
}

// formatDuration writes 42s, 3m05s or 2h07m.
func formatDuration(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, s/60%60)
}
