package web

import (
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// /metrics has each node's phase and the installs' durations; a restart
// shows the phases again from the journal without counting its installs
// twice.
func TestMetricsNodePhaseAndInstallDuration(t *testing.T) {
	r := newRig(t)
	r.netboot(macA)
	tok := r.installToken(macA, "127.0.0.1") // callbacks present the node's token
	if code := r.callbackWith(nil, macA, api.KindInstalling, "", tok); code != 204 {
		t.Fatalf("installing: %d", code)
	}
	metric := func(want string) bool {
		_, m := r.get("/metrics")
		return strings.Contains(m, want)
	}
	waitMetric := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !metric(want) {
			if time.Now().After(deadline) {
				_, m := r.get("/metrics")
				t.Fatalf("/metrics never had %s:\n%s", want, grepLines(m, "racker_node_phase")+grepLines(m, "racker_install"))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitMetric(`racker_node_phase{mac="` + macA + `",phase="installing"} 1`)
	time.Sleep(20 * time.Millisecond)
	if code := r.callbackWith(nil, macA, api.KindInstalled, "", tok); code != 204 {
		t.Fatalf("installed: %d", code)
	}
	waitMetric(`racker_node_phase{mac="` + macA + `",phase="installed"} 1`)
	waitMetric("racker_install_duration_seconds_count 1")
	if metric(`phase="installing"`) {
		t.Error("the node's old phase is still exported")
	}
	r.stop()
	r.start()
	waitMetric(`racker_node_phase{mac="` + macA + `",phase="installed"} 1`)
	if !metric("racker_install_duration_seconds_count 0") {
		t.Error("a restart counted the journal's install again")
	}
}
