package cli

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// After a bootstrap in which one node's BMC never answered: describe tells
// that node's story (the reason, the failed transition) and a booted
// node's (its transitions, its boot-service events, its recorded
// console); events shows the merged timeline and follows it.
func TestDescribeAndEventsExplainAFailureAfterwards(t *testing.T) {
	flags, url := bootRig(t)
	drive := []string{"--boot-services", url, "--bmc-driver", "fake", "--os", "testos", "--bmc-timeout", "2s"}
	if code, out, errs := run(t, "", append(append([]string{"bootstrap", "--on-failure", "exclude"}, drive...), flags...)...); code != 1 {
		t.Fatalf("bootstrap: exit %d\n%s\n%s", code, out, errs)
	}
	describe := func(node string, extra ...string) string {
		t.Helper()
		args := append(append([]string{"describe", node, "--boot-services", url, "--no-bmc"}, extra...), flags...)
		code, out, errs := run(t, "", args...)
		if code != 0 {
			t.Fatalf("describe %s: exit %d: %s", node, code, errs)
		}
		return out
	}

	dead := describe("00:11:22:33:44:61") // by its BMC's MAC
	for _, want := range []string{"Phase:", "excluded", "Reason:", "no progress in phase bmc_check", "bmc_check → excluding",
		"excluding → excluded", "Last error:", "no answer", "Console ("} {
		if !strings.Contains(dead, want) {
			t.Errorf("describe of the node with a dead BMC lacks %q:\n%s", want, dead)
		}
	}
	var d description
	if err := json.Unmarshal([]byte(describe("00:11:22:33:44:60", "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	if d.Status.Reason == "" || len(d.Transitions) < 3 || d.Transitions[len(d.Transitions)-1].To != "excluded" || d.Plan.Hostname == "" {
		t.Errorf("describe -o json of the dead node: %+v", d)
	}

	booted := describe("00:11:22:33:44:20")
	for _, want := range []string{"installing → installed", "first_boot → booted", "installed", "booted",
		"testos: flatcar-install: writing the OS image to /dev/vda", "--- racker:", "console attached"} {
		if !strings.Contains(booted, want) {
			t.Errorf("describe of a booted node lacks %q:\n%s", want, booted)
		}
	}
	if strings.Contains(booted, "\r") {
		t.Errorf("describe passes a console's carriage returns through")
	}

	// The timeline: both journals, one node's only with NODE.
	code, out, errs := run(t, "", append([]string{"events", "00:11:22:33:44:20", "-o", "json", "--boot-services", url}, flags...)...)
	if code != 0 {
		t.Fatalf("events: exit %d: %s", code, errs)
	}
	var entries []timelineEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("events -o json: %v\n%s", err, out)
	}
	kinds := map[string]int{}
	for i, e := range entries {
		if e.MAC != "00:11:22:33:44:20" {
			t.Errorf("events of one node shows %+v", e)
		}
		if i > 0 && e.Time.Before(entries[i-1].Time) {
			t.Errorf("events out of order at %d", i)
		}
		kinds[e.Source+"/"+e.Kind]++
	}
	if kinds["racker/transition"] < 5 || kinds["boot-services/installed"] != 1 || kinds["boot-services/booted"] != 1 {
		t.Errorf("timeline of a booted node: %v", kinds)
	}

	// -f prints what happens next.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var fout lockedBuffer
	done := make(chan int, 1)
	env := &Env{Stdin: strings.NewReader(""), Stdout: &fout, Stderr: &lockedBuffer{}}
	var once sync.Once
	go func() {
		done <- env.Run(ctx, append([]string{"events", "-f", "-o", "json", "--boot-services", url}, flags...))
	}()
	waitFor(t, "the timeline so far", func() bool { return strings.Contains(fout.String(), `"kind":"booted"`) })
	before := strings.Count(fout.String(), "\n")
	// The node itself reports (its address, its token): callbacks need both.
	post, ok := nodeCallbacks.Load("00:11:22:33:44:20")
	if !ok {
		t.Fatal("the simulated node 00:11:22:33:44:20 never ran")
	}
	post.(func(string))("booted")
	waitFor(t, "a new event followed", func() bool { return strings.Count(fout.String(), "\n") > before })
	once.Do(cancel)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("events -f ended with exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("events -f did not end when interrupted")
	}
}
