package release

import (
	"os"
	"path/filepath"
	"testing"
)

// lokoctl and terraform come with the release: update and upgrade replace
// them with the new release's, rollback brings the old ones back, and a
// release without them leaves no dangling /opt/bin link. They sit in the
// same bin/ as racker, where racker looks for them first.
func TestUpdateReplacesTools(t *testing.T) {
	tools := func(lokoctl, terraform string) map[string]string {
		return map[string]string{"lokoctl": lokoctl, "terraform": terraform}
	}
	reg := newTestRegistry(t)
	reg.publish(t,
		testRelease{version: "1.0.0", tools: tools("v0.9.0", "Terraform v0.13.6")},
		testRelease{version: "1.0.1", tools: tools("v0.9.1", "Terraform v0.13.7")},
		testRelease{version: "2.0.0"},
	)
	in := testInstaller(t, t.TempDir())
	bin := func(name string) string { return filepath.Join(in.Layout.Root, "opt/bin", name) }
	says := func(name, want string) {
		t.Helper()
		out, err := runOutput(bin(name))
		if err != nil || out != want {
			t.Fatalf("%s prints %q (%v), want %q", bin(name), out, err, want)
		}
		self, err1 := filepath.EvalSymlinks(bin("racker"))
		tool, err2 := filepath.EvalSymlinks(bin(name))
		if err1 != nil || err2 != nil || filepath.Dir(self) != filepath.Dir(tool) {
			t.Fatalf("%s (%s) is not next to racker (%s): %v %v", name, tool, self, err1, err2)
		}
	}

	_, err := installFrom(t, in, reg.ref, "1.0.0", Options{Migrate: true})
	must(t, err)
	says("lokoctl", "v0.9.0")
	says("terraform", "Terraform v0.13.6")

	_, err = installFrom(t, in, reg.ref, "1.0.1", Options{}) // update
	must(t, err)
	assertCurrent(t, in, "1.0.1")
	says("lokoctl", "v0.9.1")
	says("terraform", "Terraform v0.13.7")

	_, err = installFrom(t, in, reg.ref, "2.0.0", Options{Migrate: true}) // upgrade to a release built without them
	must(t, err)
	assertCurrent(t, in, "2.0.0")
	for _, name := range []string{"lokoctl", "terraform"} {
		if _, err := os.Lstat(bin(name)); !os.IsNotExist(err) {
			t.Errorf("%s still linked after upgrading to a release without it (%v)", bin(name), err)
		}
	}

	_, err = in.Rollback(t.Context())
	must(t, err)
	assertCurrent(t, in, "1.0.1")
	says("lokoctl", "v0.9.1")
	says("terraform", "Terraform v0.13.7")
}
