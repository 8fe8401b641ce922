package web

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// The child half of TestJournalSurvivesKill: record events from several
// goroutines forever, printing each one once Record has returned.
func journalChild(dir string) {
	st, err := openStore(dir, testPlan(), nil, nil, discard(), time.Now, DefaultWindow)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	for g := range 8 {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				st.Record(api.Event{MAC: bmcA, Kind: api.KindTFTP, Message: id})
				mu.Lock()
				fmt.Println("ack", id)
				mu.Unlock()
			}
		}()
	}
	select {}
}

// A process killed (SIGKILL) in the middle of writing loses no event it
// acknowledged, and the journal reopens with sequence numbers going on.
func TestJournalSurvivesKill(t *testing.T) {
	if dir := os.Getenv("RACKER_JOURNAL_CHILD"); dir != "" {
		journalChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestJournalSurvivesKill$")
	cmd.Env = append(os.Environ(), "RACKER_JOURNAL_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	acked := map[string]bool{}
	sc := bufio.NewScanner(out)
	for len(acked) < 2000 && sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			acked[id] = true
		} else {
			t.Fatalf("child: %s", sc.Text())
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if len(acked) < 2000 {
		t.Fatalf("child stopped after %d acks", len(acked))
	}

	st, err := openStore(dir, testPlan(), nil, nil, discard(), time.Now, DefaultWindow)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	var last uint64
	seen := map[string]bool{}
	for {
		evs, _, err := st.j.since("", last, 10000)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			break
		}
		for _, e := range evs {
			if e.Seq != last+1 {
				t.Fatalf("sequence jumps from %d to %d", last, e.Seq)
			}
			last = e.Seq
			seen[e.Message] = true
		}
	}
	for id := range acked {
		if !seen[id] {
			t.Errorf("acknowledged event %s is not in the journal", id)
		}
	}
	ev, err := st.j.append(api.Event{MAC: macA, Kind: api.KindDHCP})
	if err != nil || ev.Seq != last+1 {
		t.Errorf("after reopen: seq %d (%v), want %d", ev.Seq, err, last+1)
	}
	t.Logf("%d events acknowledged before the kill, %d in the journal", len(acked), last)
}
