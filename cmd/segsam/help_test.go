package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/segsam/segsam/sam"
	"github.com/segsam/segsam/train"
)

// TestSplitDefaultsShared: train's held-out share and eval's --split val
// share default to the same value and seed.
func TestSplitDefaultsShared(t *testing.T) {
	for _, cmd := range []string{"train", "eval"} {
		code, msg := runCLI(t, cmd, "-h")
		if code != 0 {
			t.Fatalf("%s -h: exit %d", cmd, code)
		}
		for _, want := range []string{"-val-fraction float", "(default 0.15)", "-split-seed int"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s -h lacks %q", cmd, want)
			}
		}
		if strings.Contains(msg, "(default 0.2)") {
			t.Errorf("%s -h still defaults a fraction to 0.2", cmd)
		}
	}
}

// TestTextShowHelp: a command without flags prints no empty flags section.
func TestTextShowHelp(t *testing.T) {
	code, msg := runCLI(t, "text", "show", "-h")
	if code != 0 || !strings.Contains(msg, "usage: segsam text show CLASS") || strings.Contains(msg, "flags:") {
		t.Errorf("exit %d: %q", code, msg)
	}
	if code, msg := runCLI(t, "text", "list", "-h"); code != 0 || !strings.Contains(msg, "flags:\n") || !strings.Contains(msg, "-category") {
		t.Errorf("text list -h: exit %d: %q", code, msg)
	}
}

// TestBuildSettings reports the binary's build (the test binary is built
// with GOEXPERIMENT=simd by the Makefile and CI), not the environment.
func TestBuildSettings(t *testing.T) {
	t.Setenv("GOEXPERIMENT", "from-the-environment")
	got := buildSettings()
	if strings.Contains(got, "from-the-environment") || !strings.HasPrefix(got, "go1.") || !strings.Contains(got, "GOEXPERIMENT=") {
		t.Errorf("buildSettings() = %q", got)
	}
	if strings.Contains(got, "-X:") {
		t.Errorf("buildSettings() = %q repeats the experiment in the version", got)
	}
}

// TestBenchTableAligned: rows printed one at a time line up with the
// header.
func TestBenchTableAligned(t *testing.T) {
	var cfgs []sam.Config
	names := []string{"sammed2d_vit_b", "vit_b"}
	for _, n := range names {
		c, err := sam.Preset(n)
		if err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, c)
	}
	var b bytes.Buffer
	tab := newBenchTable(&b, names, cfgs)
	tab.row("sammed2d_vit_b", "256x256", "1", "3.03 s", "1.33 s", "1.30 s", "120.0 ms", "14.2 ms", "15.0 ms", "138.1 ms", "1523456 kB")
	tab.row("vit_b", "1024x1024", "1", "21.80 s", "13.20 s", "13.00 s", "300.5 ms", "160.0 ms", "172.0 ms", "980.0 ms", "4123456 kB")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	// Every column starts at the same offset in every line.
	col := strings.Index(lines[0], "peak RSS")
	for _, l := range lines[1:] {
		if !strings.HasSuffix(strings.TrimRight(l[:col], " "), "ms") || l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("misaligned line %q (header %q)", l, lines[0])
		}
	}
	enc := strings.Index(lines[0], "encoder median")
	if lines[1][enc:enc+6] != "1.33 s" || lines[2][enc:enc+7] != "13.20 s" {
		t.Errorf("encoder median column misaligned:\n%s", b.String())
	}
}

// TestDefaultEncoderMode: SAM-Med2D's adapters train by default, a plain
// SAM encoder stays frozen.
func TestDefaultEncoderMode(t *testing.T) {
	for _, tc := range []struct {
		preset string
		want   train.EncoderMode
	}{{"sammed2d_vit_b", train.EncoderAdapters}, {"vit_b", train.EncoderFrozen}} {
		c, err := sam.Preset(tc.preset)
		if err != nil {
			t.Fatal(err)
		}
		if got := defaultEncoderMode(c); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.preset, got, tc.want)
		}
	}
}

// TestSubcommandUsageNamesCommandOnce: "segsam data assemble -h" prints
// "usage: segsam data assemble ...", not the subcommand twice.
func TestSubcommandUsageNamesCommandOnce(t *testing.T) {
	for _, sub := range []string{"build", "list", "assemble"} {
		code, msg := runCLI(t, "data", sub, "-h")
		if code != 0 {
			t.Fatalf("data %s -h: exit %d", sub, code)
		}
		if !strings.Contains(msg, "usage: segsam data "+sub+" ") && !strings.Contains(msg, "usage: segsam data "+sub+"\n") {
			t.Errorf("data %s -h: %q", sub, msg)
		}
		if strings.Contains(msg, sub+" "+sub) {
			t.Errorf("data %s -h repeats the subcommand: %q", sub, msg)
		}
	}
}
