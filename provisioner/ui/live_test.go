package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/status"
)

// The view orders machines as nodes.csv does (not by hostname, as racker
// status does), marks the management node, keeps nodes only the records
// know, and counts per phase.
func TestBuildRack(t *testing.T) {
	tr := newTestRack(t, 6)
	now := time.Now()
	tr.move(tr.server(0), orchestrator.Booted, "booted", now)
	tr.move(tr.server(1), orchestrator.Failed, "install failed", now, func(n *orchestrator.Node) { n.Reason = "install failed" })
	tr.set(func(st *orchestrator.State) {
		st.Nodes["52:54:00:00:09:99"] = &orchestrator.Node{PrimaryMAC: "52:54:00:00:09:99", Hostname: "aaa-old", Phase: orchestrator.Booted}
	})
	p, st, err := tr.src.Rack(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := buildRack(p, st, now)
	var order []string
	for _, u := range r.Units {
		order = append(order, u.PrimaryMAC)
	}
	want := []string{mac(0, 0), mac(0, 1), mac(0, 2), mac(0, 3), mac(0, 4), mac(0, 5), "52:54:00:00:09:99"}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("order %v, want nodes.csv's then the recorded node: %v", order, want)
	}
	if !r.Units[0].Management || r.Units[0].Phase != "" || r.Units[1].Management {
		t.Errorf("management node: %+v", r.Units[0])
	}
	if r.Units[6].Row != -1 || r.Units[2].Reason != "install failed" || r.Units[2].Type != "uefi" {
		t.Errorf("units: %+v", r.Units)
	}
	if r.Servers != 6 || r.Done != 2 || r.Failed != 1 || r.Pending != 3 || r.Percent != 33 {
		t.Errorf("counts: %+v", r)
	}
	if len(r.Phases) != 3 || r.Phases[0] != (PhaseCount{orchestrator.Pending, 3}) || r.Phases[1] != (PhaseCount{orchestrator.Booted, 2}) {
		t.Errorf("phases: %+v", r.Phases)
	}
	// Whatever racker status says about a node, the view says too.
	sm := map[string]status.Node{}
	for _, n := range st.Nodes {
		sm[n.PrimaryMAC] = n
	}
	for _, u := range r.Units[1:] {
		if u.Node != sm[u.PrimaryMAC] {
			t.Errorf("view %+v differs from status %+v", u.Node, sm[u.PrimaryMAC])
		}
	}
}

// The stream sends the rack at once, then every change the orchestrator
// records and every boot-services event, without the page asking.
func TestStreamIsLive(t *testing.T) {
	tr := newTestRack(t, 4)
	tr.journal.add(tr.server(0).PrimaryMAC, api.KindDHCP, "old event")
	s, err := New(Config{Source: tr.src, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	ts := httptest.NewServer(s)
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	msgs := make(chan [2]string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev string
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				ev = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				msgs <- [2]string{ev, v}
			}
		}
		close(msgs)
	}()
	next := func(kind string, until func(string) bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("stream ended waiting for %s", kind)
				}
				if m[0] == kind && until(m[1]) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s message in 5 s", kind)
			}
		}
	}
	n := tr.server(1)
	next("rack", func(d string) bool { return strings.Contains(d, `"primary_mac":"`+n.PrimaryMAC+`"`) })
	next("ev", func(d string) bool { return strings.Contains(d, "old event") })
	tr.move(n, orchestrator.Installing, "the node called back installing", time.Now())
	next("rack", func(d string) bool {
		var r Rack
		json.Unmarshal([]byte(d), &r)
		u, _ := r.unit(n.PrimaryMAC)
		return u.Phase == orchestrator.Installing
	})
	tr.journal.add(n.PrimaryMAC, api.KindInstalled, "install done")
	next("ev", func(d string) bool { return strings.Contains(d, "install done") })

	// The node's panel has its transitions and, with no console recorded,
	// its events.
	var d Detail
	r, err := http.Get(ts.URL + "/api/nodes/" + n.PrimaryMAC)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(r.Body).Decode(&d)
	r.Body.Close()
	if len(d.Transitions) != 1 || d.Transitions[0].Cause != "the node called back installing" || d.Console != nil ||
		len(d.Events) != 1 || d.Events[0].Message != "install done" {
		t.Errorf("detail: %+v", d)
	}
}

func TestCleanConsole(t *testing.T) {
	in := "\x1b[0;32mOK\x1b[0m boot\r\nline\rover\x07bell\x1b]0;title\x07 \x1b(B\xff end\n"
	if got, want := CleanConsole([]byte(in)), "OK boot\nline\noverbell \uFFFD end\n"; got != want {
		t.Errorf("CleanConsole = %q, want %q", got, want)
	}
}

// A long console shows its end, from a whole line.
func TestConsoleTail(t *testing.T) {
	tr := newTestRack(t, 2)
	host := tr.server(0).Hostname
	tr.console(host, strings.Repeat("early line\n", 5000)+"last line\n")
	c, err := tr.src.Console(host, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Tail, "early line\n") || !strings.HasSuffix(c.Tail, "last line\n") || len(c.Tail) > 100 || c.Size < 50000 {
		t.Errorf("tail %q (size %d)", c.Tail, c.Size)
	}
	if _, err := tr.src.Console("../../etc/passwd", 100); err == nil {
		t.Error("a path as hostname was read")
	}
}

// Events of MACs outside the rack (a rogue making MACs up) are kept per
// MAC only up to a bound; the rack's own always are.
func TestEventsOfStrangersAreBounded(t *testing.T) {
	tr := newTestRack(t, 3)
	h := newHub(tr.src, time.Second, slog.New(slog.DiscardHandler))
	if _, err := h.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	var evs []api.Event
	for i := 0; i < 5000; i++ {
		evs = append(evs, api.Event{Seq: uint64(i + 1), MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), Kind: api.KindMachineSeen})
	}
	n := tr.server(1)
	evs = append(evs, api.Event{Seq: 5001, MAC: n.BMCMAC, Kind: api.KindDHCP}, api.Event{Seq: 5002, MAC: n.PrimaryMAC, Kind: api.KindDHCP})
	h.addEvents(evs)
	if len(h.byMAC) != maxOtherMACs+2 {
		t.Errorf("%d MACs kept, want %d strangers and the node's two", len(h.byMAC), maxOtherMACs)
	}
	if got := h.nodeEvents(n.PrimaryMAC, n.BMCMAC); len(got) != 2 || got[0].Seq != 5001 {
		t.Errorf("the node's events: %+v", got)
	}
	if len(h.events) > 2*keepEvents {
		t.Errorf("%d events kept in the stream", len(h.events))
	}
}
