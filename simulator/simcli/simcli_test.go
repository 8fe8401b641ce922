package simcli

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsTheCommandsButNotTheHiddenVBMC(t *testing.T) {
	code, out, _ := run(t, "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, c := range []string{"up", "down", "status", "exec", "console", "fault"} {
		if !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("help lacks %s:\n%s", c, out)
		}
	}
	if strings.Contains(out, "vbmc") {
		t.Errorf("the hidden vbmc command is listed:\n%s", out)
	}
}

func TestCommandsWithoutARackSayHowToMakeOne(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"status"}, {"fault", "n1", "bmc-down"}, {"console", "n1"}, {"exec", "--", "true"}} {
		code, _, errs := run(t, append([]string{"--dir", dir}, args...)...)
		if code != 1 || !strings.Contains(errs, "racker-sim up") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}

func TestUpRefusesBadInputBeforeTouchingTheHost(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"up", "--name", "much-too-long-name"},
		{"up", "--os", "windows"},
		{"up", "--nodes", "99"},
		{"up", "--types", "bios,uefi", "--disks", "purple=10G"},
		{"up", "--disks", "2"},
		{"up", "--disks", "uefi=4G,40G,1G,1G,1G"},
	} {
		code, _, errs := run(t, append([]string{"--dir", dir}, args...)...)
		if code != 1 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused up left files in the rack's folder: %v", entries)
	}
}

// Without Racker's installer image next to it (make image), up says how
// to make one before it builds anything.
func TestUpNeedsTheInstallerImage(t *testing.T) {
	dir := t.TempDir()
	code, _, errs := run(t, "--dir", dir, "up", "--nodes", "1")
	if code != 1 || !strings.Contains(errs, "make image") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("up wrote %d files before refusing", len(entries))
	}
}

func TestStatusOutputFlagIsChecked(t *testing.T) {
	code, _, errs := run(t, "--dir", t.TempDir(), "status", "-o", "yaml")
	if code != 1 || !strings.Contains(errs, "table or json") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

// racker-sim console leaves on ~. at the start of a line, as racker
// console does, or on Ctrl-]; ~~ sends one ~ and a ~ mid-line is typed.
func TestConsoleEscapes(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"ls\r~.more", "ls\r"},
		{"~.", ""},
		{"a~.b\r~~x\r", "a~.b\r~x\r"},
		{"ab\x1dcd", "ab"},
		{"\r~x", "\r~x"},
	} {
		var out strings.Builder
		if _, err := io.Copy(&out, &untilEscape{r: strings.NewReader(c.in), lineStart: true}); err != nil {
			t.Fatal(err)
		}
		if out.String() != c.want {
			t.Errorf("%q → %q, want %q", c.in, out.String(), c.want)
		}
	}
}
