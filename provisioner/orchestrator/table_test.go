package orchestrator

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"
)

// nodeEvents are the inputs a node causes itself.
var nodeEvents = []input{inDHCP, inTFTP, inIPXEInstall, inIPXEDisk, inIPXEOther, inIgnInstall, inIgnBoot,
	inInstalling, inInstalled, inBooted, inNodeFailed}

// opInputs are the outcomes of operations.
var opInputs = []input{inDiagOK, inGeneration, inPXESet, inDiskBootSet, inPoweredOff, inOpFailed}

func testMachine(policy Policy) *machine {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	return &machine{cfg: &Config{Policy: policy, RetryBackoff: 10 * time.Second, OS: "flatcar current"},
		now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler)}
}

// expect finds the rule for (p, in) by scanning the table itself, not the
// machine's index, with the guards evaluated on n.
func expect(p Phase, in input, n Node) (rule, bool) {
	for _, from := range []Phase{p, anyPhase} {
		for _, r := range rules {
			if r.from == from && r.on == in && (r.when == nil || r.when.ok(&n)) {
				return r, true
			}
		}
	}
	return rule{}, false
}

// TestEveryPhaseInputPair walks every (phase, input) pair, with every guard
// both ways and under every failure policy, through the machine: the rule
// the table names applies and nothing else happens; no rule, no change at
// all.
func TestEveryPhaseInputPair(t *testing.T) {
	policies := map[string]struct {
		policy Policy
		want   Phase // where a failure takes the node
	}{
		"retry":         {Policy{OnFailure: Retry, Retries: 3, AfterRetries: Exclude}, BMCCheck},
		"retries spent": {Policy{OnFailure: Retry, Retries: 0, AfterRetries: Exclude}, Excluding},
		"exclude":       {Policy{OnFailure: Exclude}, Excluding},
		"ask":           {Policy{OnFailure: Ask}, Excluding}, // no one to ask in this machine: exclude
		"cancel":        {Policy{OnFailure: Cancel}, Failed},
	}
	pairs, applied := 0, 0
	for _, p := range phaseList {
		for _, in := range inputs {
			for _, order := range []bool{false, true} {
				for _, byUser := range []bool{false, true} {
					for name, pol := range policies {
						m := testMachine(pol.policy)
						n := &Node{PrimaryMAC: mac(1), Hostname: "n1", Phase: p, PhaseSince: time.Unix(1, 0),
							NeedReinstall: order, ExcludedByUser: byUser, Failures: 1, Reason: "earlier", OS: "old"}
						before := *n
						h := happening{cause: "because", op: opResult{kind: phases[p].op, generation: 7, verified: true}}
						got := m.step(n, in.in, h)
						r, ok := expect(p, in.in, before)
						pairs++
						where := string(p) + " + " + string(in.in) + " (" + name + ")"
						if got != ok {
							t.Fatalf("%s: step applied %v, the table says %v", where, got, ok)
						}
						if !ok {
							if !reflect.DeepEqual(before, *n) || len(m.logged) != 0 || m.cancelled != nil {
								t.Fatalf("%s: no rule, yet the node changed: %+v -> %+v", where, before, *n)
							}
							continue
						}
						applied++
						want := r.to
						switch want {
						case "":
							want = p
						case byPolicy:
							want = pol.want
							if n.Failures != before.Failures+1 || n.Reason == "" {
								t.Errorf("%s: a failure not counted: %+v", where, n)
							}
							if (pol.want == Failed) != errors.Is(m.cancelled, ErrCancelled) && in.in != inCancel {
								t.Errorf("%s: cancelled %v", where, m.cancelled)
							}
						}
						if n.Phase != want {
							t.Fatalf("%s: phase %s, want %s", where, n.Phase, want)
						}
						if r.to == "" && len(m.logged) != 0 {
							t.Errorf("%s: stayed, yet logged %v", where, m.logged)
						}
						if r.to != "" && (len(m.logged) != 1 || m.logged[0].From != p || m.logged[0].To != want || m.logged[0].Cause == "") {
							t.Errorf("%s: transition log %+v", where, m.logged)
						}
						if slices.Contains(nodeEvents, in.in) && r.to != byPolicy && r.to != "" && n.Phase.Rank() <= p.Rank() {
							t.Errorf("%s: a node's event moved it back, %s -> %s", where, p, n.Phase)
						}
					}
				}
			}
		}
	}
	t.Logf("%d (phase, input, guard, policy) cases, %d with a rule", pairs, applied)
}

// The table's shape: what every phase must offer.
func TestTableShape(t *testing.T) {
	known := map[input]bool{}
	for _, in := range inputs {
		if known[in.in] {
			t.Errorf("input %q listed twice", in.in)
		}
		known[in.in] = true
	}
	for _, r := range rules {
		if _, ok := phases[r.from]; !ok && r.from != anyPhase {
			t.Errorf("rule from unknown phase %q", r.from)
		}
		if _, ok := phases[r.to]; !ok && r.to != "" && r.to != byPolicy {
			t.Errorf("rule to unknown phase %q", r.to)
		}
		if !known[r.on] {
			t.Errorf("rule on unlisted input %q", r.on)
		}
	}
	for _, p := range phaseList {
		info := phases[p]
		has := func(in input, to ...Phase) bool {
			for _, r := range rulesFor(p, in) {
				if len(to) == 0 || slices.Contains(to, r.to) {
					return true
				}
			}
			return false
		}
		if info.slot {
			if DefaultTimeouts.limit(p) <= 0 || !has(inTimeout, byPolicy) {
				t.Errorf("%s holds a slot but cannot time out", p)
			}
			if !has(inNewRun) {
				t.Errorf("%s: a resumed run does not restart its timeout", p)
			}
			if !has(inNodeFailed, byPolicy) && p != BMCCheck && p != Reinstall {
				t.Errorf("%s: a node's failed callback is ignored", p)
			}
		}
		if info.terminal || p == Pending {
			for _, in := range append(append([]input{inTimeout}, nodeEvents...), opInputs...) {
				if has(in) && !(p == Excluding && in == inPoweredOff) {
					t.Errorf("%s (no slot) reacts to %s", p, in)
				}
			}
		}
		if info.op != "" {
			done := map[opKind]input{opDiag: inDiagOK, opReinstall: inGeneration, opPXE: inPXESet, opDiskBoot: inDiskBootSet, opPowerOff: inPoweredOff}[info.op]
			if !has(done) {
				t.Errorf("%s calls for %s but nothing takes its outcome", p, info.op)
			}
			if info.op != opPowerOff && !has(inOpFailed) {
				t.Errorf("%s calls for %s but a failure of it is not retried", p, info.op)
			}
		}
	}
	// Every phase is reachable from pending.
	seen := map[Phase]bool{Pending: true}
	queue := []Phase{Pending}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, in := range inputs {
			for _, r := range rulesFor(p, in.in) {
				next := []Phase{r.to}
				if r.to == byPolicy {
					next = []Phase{BMCCheck, Excluding, Failed}
				}
				for _, q := range next {
					if q != "" && !seen[q] {
						seen[q] = true
						queue = append(queue, q)
					}
				}
			}
		}
	}
	for _, p := range phaseList {
		if !seen[p] {
			t.Errorf("%s cannot be reached from pending", p)
		}
	}
}

// docs/phases.md is printed from the table (go generate); a table changed
// without it fails here, before make lint does.
func TestPhaseDocIsCurrent(t *testing.T) {
	var b bytes.Buffer
	if err := WritePhaseTable(&b); err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("../../docs/phases.md")
	if err != nil || !bytes.Equal(have, b.Bytes()) {
		t.Fatalf("docs/phases.md is not the current table (%v): run make generate", err)
	}
}
