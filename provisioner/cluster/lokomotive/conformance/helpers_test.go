package conformance

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	clct "github.com/coreos/container-linux-config-transpiler/config"
	"github.com/kinvolk/lokomotive/pkg/components"
	flatcarupdate "github.com/kinvolk/lokomotive/pkg/components/flatcar-linux-update-operator"
	metricsserver "github.com/kinvolk/lokomotive/pkg/components/metrics-server"
	openebsoperator "github.com/kinvolk/lokomotive/pkg/components/openebs-operator"
	openebsstorageclass "github.com/kinvolk/lokomotive/pkg/components/openebs-storage-class"
	"github.com/kinvolk/lokomotive/pkg/components/rook"
	rookceph "github.com/kinvolk/lokomotive/pkg/components/rook-ceph"
	"github.com/kinvolk/lokomotive/pkg/components/velero"
	webui "github.com/kinvolk/lokomotive/pkg/components/web-ui"
	"github.com/vincent-petithory/dataurl"
)

// offered are the Lokomotive components Racker offers, by name, as
// lokoctl's component list makes them (fresh values: LoadConfig fills them).
func offered() map[string]components.Component {
	return map[string]components.Component{
		flatcarupdate.Name:       flatcarupdate.NewConfig(),
		webui.Name:               webui.NewConfig(),
		metricsserver.Name:       metricsserver.NewConfig(),
		rook.Name:                rook.NewConfig(),
		rookceph.Name:            rookceph.NewConfig(),
		openebsoperator.Name:     openebsoperator.NewConfig(),
		openebsstorageclass.Name: openebsstorageclass.NewConfig(),
		velero.Name:              velero.NewConfig(),
	}
}

// transpile turns a node's Container Linux Config snippets into Ignition
// with the transpiler the ct Terraform provider v0.8.0 (Lokomotive's)
// uses, strictly: a warning fails too. It returns the text a node would
// get: networkd units and decoded file contents.
func transpile(t *testing.T, node string, snippets []string) string {
	t.Helper()
	var out strings.Builder
	for i, s := range snippets {
		cfg, ast, rpt := clct.Parse([]byte(s))
		if len(rpt.Entries) > 0 {
			t.Errorf("%s: snippet %d: the Container Linux Config transpiler reports: %s\n%s", node, i+1, rpt, s)
			continue
		}
		ign, rpt := clct.Convert(cfg, "", ast)
		if rpt.IsFatal() {
			t.Errorf("%s: snippet %d: converting to Ignition: %s", node, i+1, rpt)
			continue
		}
		for _, u := range ign.Networkd.Units {
			out.WriteString(u.Contents + "\n")
		}
		for _, f := range ign.Storage.Files {
			d, err := dataurl.DecodeString(f.Contents.Source)
			if err != nil {
				t.Errorf("%s: %s: %v", node, f.Path, err)
				continue
			}
			out.WriteString(f.Path + ":\n" + string(d.Data))
		}
		if b, err := json.Marshal(ign); err != nil || len(b) == 0 {
			t.Errorf("%s: the Ignition config does not marshal: %v", node, err)
		}
	}
	return out.String()
}

// containsEncoded: Helm charts put secrets in base64; s appears in text
// plainly or inside a base64 value.
func containsEncoded(text, s string) bool {
	if strings.Contains(text, s) {
		return true
	}
	for _, f := range strings.FieldsFunc(text, func(r rune) bool { return r == '"' || r == ' ' || r == '\n' || r == ':' }) {
		if b, err := base64.StdEncoding.DecodeString(f); err == nil && strings.Contains(string(b), s) {
			return true
		}
	}
	return false
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestLoaderVersions: the check decodes with the HCL and cty versions
// lokoctl v0.9.0 is built with (the release's build module resolves the
// same). A requirement added to this module that raised them would
// silently replace Lokomotive's loader with another; this says so instead.
func TestLoaderVersions(t *testing.T) {
	want := map[string]string{"github.com/hashicorp/hcl/v2": "v2.7.2", "github.com/zclconf/go-cty": "v1.7.0", "github.com/kinvolk/lokomotive": "v0.9.0"}
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	args := []string{"list", "-m", "-f", "{{.Path}} {{.Version}} {{.Replace}}"}
	for p := range want {
		args = append(args, p)
	}
	out, err := exec.Command(goBin, args...).Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[1] != want[f[0]] || f[2] != "<nil>" {
			t.Errorf("this module builds with %q; lokoctl v0.9.0 uses %s", line, want[f[0]])
		}
		delete(want, f[0])
	}
	for p := range want {
		t.Errorf("%s: not in this module's build list", p)
	}
}
