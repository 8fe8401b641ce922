package rack

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseDisks(t *testing.T) {
	types := []string{"bios", "uefi"}
	p, err := ParseDisks([]string{"20g, 20G", "uefi=4G,40G"}, types)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.For("uefi"); !reflect.DeepEqual(got, []string{"4G", "40G"}) {
		t.Errorf("uefi: %v", got)
	}
	if got := p.For("bios"); !reflect.DeepEqual(got, []string{"20G", "20G"}) {
		t.Errorf("bios: %v", got)
	}
	// Without --disks: two disks over flatcar-install -s's 10 GB.
	p, _ = ParseDisks(nil, types)
	if got := p.For("bios"); !reflect.DeepEqual(got, []string{"10G", "10G"}) {
		t.Errorf("default: %v", got)
	}
	// A later value for a type wins; one disk is fine.
	p, _ = ParseDisks([]string{"uefi=4G,40G", "uefi=100G"}, types)
	if got := p.For("uefi"); !reflect.DeepEqual(got, []string{"100G"}) {
		t.Errorf("later wins: %v", got)
	}
	for spec, want := range map[string]string{
		"2":              `disk size "2": want a number and a unit`,
		"purple=10G":     `the rack has no node type "purple" (types: bios, uefi)`,
		"=10G":           "no node type before '='",
		"uefi=":          `disk size ""`,
		"10G,,10G":       `disk size ""`,
		"1G,1G,1G,1G,1G": "5 disks; a node has at most 4",
		"65T":            "over 64T",
		"0G":             "want a number and a unit",
		"10GB":           "want a number and a unit",
		"uefi=4G;40G":    `disk size "4G;40G"`,
	} {
		if _, err := ParseDisks([]string{spec}, types); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--disks") {
			t.Errorf("--disks %s: %v, want an error with %q", spec, err, want)
		}
	}
}

func TestNodeTypes(t *testing.T) {
	ms := []Machine{{Name: "mgmt", Type: "red"}, {Name: "n1", Type: "blue"}, {Name: "n2", Type: "blue"}, {Name: "n3", Type: "green"}}
	if got := nodeTypes(ms); !reflect.DeepEqual(got, []string{"blue", "green"}) {
		t.Errorf("types %v", got)
	}
}
