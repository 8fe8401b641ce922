package rack

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/racker/racker/simulator/vbmc"
)

func TestParseBMCProtocols(t *testing.T) {
	types := []string{"old", "new"}
	got, err := ParseBMCProtocols(nil, types)
	if err != nil || !reflect.DeepEqual(got, map[string][]string{"old": {"ipmi", "redfish"}, "new": {"ipmi", "redfish"}}) {
		t.Fatalf("default: %v, %v", got, err)
	}
	got, err = ParseBMCProtocols([]string{"ipmi", "new=Redfish", "new=redfish, redfish"}, types)
	if err != nil || !reflect.DeepEqual(got, map[string][]string{"old": {"ipmi"}, "new": {"redfish"}}) {
		t.Fatalf("per type: %v, %v", got, err)
	}
	for spec, want := range map[string]string{
		"snmp":         `BMC protocol "snmp": want ipmi or redfish`,
		"purple=ipmi":  `the rack has no node type "purple" (types: old, new)`,
		"=redfish":     "no node type before '='",
		"new=":         `BMC protocol ""`,
		"ipmi;redfish": `BMC protocol "ipmi;redfish"`,
	} {
		if _, err := ParseBMCProtocols([]string{spec}, types); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--bmc-protocols") {
			t.Errorf("--bmc-protocols %s: %v, want an error with %q", spec, err, want)
		}
	}
	// A rack made before Redfish recorded nothing: IPMI only, as it ran.
	if ps := (Machine{}).VBMCProtocols(); !reflect.DeepEqual(ps, []vbmc.Protocol{vbmc.ProtocolIPMI}) {
		t.Errorf("no protocols recorded: %v", ps)
	}
}

func TestWriteNodeTypesKeepsSettingsAndMarksRedfishOnlyTypes(t *testing.T) {
	s := &State{Dir: t.TempDir(), Machines: []Machine{{Name: "mgmt", Type: "old"},
		{Name: "n1", Type: "old", BMCProtocols: []string{"ipmi", "redfish"}}, {Name: "n2", Type: "new", BMCProtocols: []string{"redfish"}}}}
	path := s.stateNodeTypes()
	os.MkdirAll(filepath.Dir(path), 0o755)
	os.WriteFile(path, []byte(`{"new": {"install_disk": ">=20GB"}, "old": {"console": "ttyS1,115200n8"}}`), 0o644)
	if err := writeNodeTypes(s); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var got map[string]map[string]string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{"new": {"install_disk": ">=20GB", "bmc_protocol": "redfish"}, "old": {"console": "ttyS1,115200n8"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("node-types.json:\n%s", b)
	}
	// Every BMC speaks IPMI: nothing is written.
	s2 := &State{Dir: t.TempDir(), Machines: []Machine{{Name: "mgmt"}, {Name: "n1", Type: "old"}}}
	if err := writeNodeTypes(s2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s2.stateNodeTypes()); !os.IsNotExist(err) {
		t.Errorf("node-types.json written for an IPMI rack: %v", err)
	}
}
