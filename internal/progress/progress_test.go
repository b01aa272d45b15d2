package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// fakeClock advances by step on every reading.
func fakeClock(step time.Duration) func() time.Time {
	t := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(step)
		return t
	}
}

func newTest(total int, terminal bool, step time.Duration) (*Bar, *bytes.Buffer) {
	var buf bytes.Buffer
	b := New(&buf, total, "prepare")
	b.now = fakeClock(step)
	b.start = b.now()
	b.SetTerminal(terminal)
	return b, &buf
}

func TestPlainLines(t *testing.T) {
	b, buf := newTest(40, false, time.Second)
	for i := 0; i < 40; i++ {
		b.Add(1)
	}
	b.Done()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	// One line every 5 s (updates 1 s apart: after 5, 10, ..., 35 s) plus
	// the final line; never one per update.
	if len(lines) != 8 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	if strings.Contains(buf.String(), "\r") {
		t.Errorf("plain output contains a carriage return")
	}
	last := lines[len(lines)-1]
	for _, want := range []string{"prepare [====================] 40/40 100%", "0.98/s", "in 41s"} {
		if !strings.Contains(last, want) {
			t.Errorf("final line %q lacks %q", last, want)
		}
	}
	if !strings.Contains(lines[2], "ETA") {
		t.Errorf("line %q lacks an ETA", lines[2])
	}
}

// TestPlainFastUpdates: many quick updates of a small total print no
// line per update, only the final one.
func TestPlainFastUpdates(t *testing.T) {
	b, buf := newTest(4, false, 100*time.Millisecond)
	for i := 0; i < 4; i++ {
		b.Add(1)
	}
	b.Done()
	if got := strings.Count(buf.String(), "\n"); got != 1 || !strings.Contains(buf.String(), "4/4 100%") {
		t.Errorf("%d lines: %q", got, buf.String())
	}
}

func TestTerminalRewritesOneLine(t *testing.T) {
	b, buf := newTest(5, true, time.Second)
	for i := 0; i < 5; i++ {
		b.Add(1)
	}
	b.Done()
	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("terminal output should end with one newline: %q", out)
	}
	if strings.Count(out, "\r") != 6 {
		t.Errorf("want 6 redraws: %q", out)
	}
	if !strings.Contains(out, "3/5  60%") || !strings.Contains(out, "ETA 2s") {
		t.Errorf("missing intermediate state: %q", out)
	}
}

func TestUnknownTotalAndNil(t *testing.T) {
	b, buf := newTest(0, false, 11*time.Second)
	b.Add(3)
	b.Done()
	b.Done()
	b.Add(1)
	if got := buf.String(); !strings.Contains(got, "prepare 3 ") || strings.Count(got, "\n") != 2 {
		t.Errorf("output %q", got)
	}
	var nilBar *Bar
	nilBar.Add(1)
	nilBar.Done()
}

func TestFormatDuration(t *testing.T) {
	cases := map[time.Duration]string{
		3 * time.Second:             "3s",
		185 * time.Second:           "3m05s",
		2*time.Hour + 7*time.Minute: "2h07m",
		1500 * time.Millisecond:     "2s",
	}
	for d, want := range cases {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
