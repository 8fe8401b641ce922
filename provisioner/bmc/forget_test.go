package bmc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Forget matches a BMC by its whole address (10.0.0.1 is not 10.0.0.10)
// on any port, or by its MAC; what it does not match stays; forgetting
// twice finds nothing.
func TestForgetMatchesWholeAddressesAndTheMAC(t *testing.T) {
	state := t.TempDir()
	pins := &FilePins{Path: filepath.Join(state, PinsFile)}
	for _, k := range []string{"10.0.0.1:443", "10.0.0.10:443", "[fd00::1]:8443"} {
		if _, _, err := pins.Pin(k, "sha256:"+k); err != nil {
			t.Fatal(err)
		}
	}
	protos := &FileProtocols{Path: filepath.Join(state, ProtocolsFile)}
	choices := &FileChoices{Path: filepath.Join(state, ChoicesFile)}
	protos.Learned("10.0.0.1:623", protoLanplus)
	protos.Learned("10.0.0.10:623", protoLanplus)
	choices.Chose("0c:c4:7a:00:00:01", ChoiceIPMI)
	choices.Chose("0c:c4:7a:00:00:02", ChoiceRedfish)

	gone, err := Forget(state, []string{"10.0.0.1", "fd00::1"}, "0c:c4:7a:00:00:01")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range gone {
		got = append(got, r.File+" "+r.Key+" "+r.What)
	}
	want := []string{
		"bmc-pins.json 10.0.0.1:443 TLS key sha256:10.0.0.1:443",
		"bmc-pins.json [fd00::1]:8443 TLS key sha256:[fd00::1]:8443",
		"bmc-protocols.json 0c:c4:7a:00:00:01 auto chose ipmi",
		"bmc-protocols.json 10.0.0.1:623 IPMI protocol lanplus",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("forgot\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	left, _ := pins.List()
	if strings.Join(left, " ") != "10.0.0.10:443" {
		t.Errorf("pins left: %v", left)
	}
	if p, _ := protos.Protocol("10.0.0.10:623"); p != protoLanplus {
		t.Errorf("10.0.0.10's protocol: %q", p)
	}
	if c, _ := choices.Choice("0c:c4:7a:00:00:02"); c != ChoiceRedfish {
		t.Errorf("the other BMC's choice: %q", c)
	}
	if again, err := Forget(state, []string{"10.0.0.1"}, "0c:c4:7a:00:00:01"); err != nil || len(again) != 0 {
		t.Errorf("forgetting twice: %v, %v", again, err)
	}
	// A state folder that kept nothing: nothing forgotten, no error, and
	// nothing made there.
	fresh := filepath.Join(t.TempDir(), "fresh")
	if none, err := Forget(fresh, []string{"10.0.0.1"}, ""); err != nil || len(none) != 0 {
		t.Errorf("a fresh state folder: %v, %v", none, err)
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("forgetting made the state folder: %v", err)
	}
}
