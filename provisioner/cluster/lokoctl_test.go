package cluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLokoctlOutputIsProgress runs a lokoctl stand-in (a shell script: a
// unit-test fake, since the real one cannot reach its Terraform providers
// here) through Apply's own runner: its stdout and stderr lines are shown
// as they come, each prefixed; a failure names the step, its exit status
// and repeats its last lines; success says the step is done.
func TestLokoctlOutputIsProgress(t *testing.T) {
	bin := t.TempDir()
	script := func(body string) {
		if err := os.WriteFile(filepath.Join(bin, "lokoctl"), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	look := func(name string) (string, error) { return filepath.Join(bin, name), nil }

	script(`echo "config: $(ls baremetal.lokocfg)"
echo "Initializing the backend..." 
echo "Error: matchbox provider not found" >&2
i=1; while [ $i -le 12 ]; do echo "line $i"; i=$((i+1)); done
printf 'no newline at the end'
exit 3
`)
	in := lokoInput(t)
	in.LookPath = look
	var out bytes.Buffer
	in.Stdout = &out
	err := Apply(context.Background(), Lokomotive, in)
	if err == nil {
		t.Fatal("a lokoctl that exits 3 was not an error")
	}
	msg := err.Error()
	for _, want := range []string{`step "lokoctl cluster apply --confirm --verbose"`, "exit status 3", "  line 12", "  no newline at the end"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "line 4\n") {
		t.Errorf("the error repeats more than the last lines:\n%s", msg)
	}
	shown := out.String()
	for _, want := range []string{
		"bootstrap: step \"lokoctl cluster apply --confirm --verbose\" in " + filepath.Join(in.StateDir, LokomotiveDir) + "\n",
		LokoctlPrefix + "config: baremetal.lokocfg\n",
		LokoctlPrefix + "Error: matchbox provider not found\n",
		LokoctlPrefix + "line 12\n",
		LokoctlPrefix + "no newline at the end\n",
	} {
		if !strings.Contains(shown, want) {
			t.Errorf("output lacks %q:\n%s", want, shown)
		}
	}
	if strings.Contains(shown, "done") {
		t.Errorf("a failed step says done:\n%s", shown)
	}

	script("echo applied\n")
	out.Reset()
	if err := Apply(context.Background(), Lokomotive, in); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), LokoctlPrefix+"applied\n") || !strings.Contains(out.String(), `step "lokoctl cluster apply --confirm --verbose" done`) {
		t.Errorf("success output:\n%s", out.String())
	}
}

// TestProgressLinesKeepWholeLines: output arriving in pieces is shown
// line by line, never a half line.
func TestProgressLinesKeepWholeLines(t *testing.T) {
	var out bytes.Buffer
	p := &progressLines{w: &out, prefix: "> "}
	for _, piece := range []string{"Ter", "raform v0.13.6\r\nsec", "ond\n\n", "thi"} {
		p.Write([]byte(piece))
	}
	if out.String() != "> Terraform v0.13.6\n> second\n> \n" {
		t.Errorf("before Flush: %q", out.String())
	}
	p.Flush()
	if !strings.HasSuffix(out.String(), "> thi\n") || p.Tail() != "  Terraform v0.13.6\n  second\n  thi" {
		t.Errorf("after Flush: %q, tail %q", out.String(), p.Tail())
	}
}
