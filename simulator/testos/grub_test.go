package testos

import "testing"

// The grub.cfg Lokomotive's installer leaves on the OEM partition: its
// lines are appended after whatever the image had, and GRUB's last
// assignment wins (expanding $linux_append).
func TestGrubAppend(t *testing.T) {
	cfg := `# default
set linux_append="flatcar.autologin"
set linux_append="$linux_append  ignition.config.url=http://10.0.0.1:8080/matchbox/ignition?mac=52:54:00:00:01:01&os=installed"
set linux_console="console=ttyS0,115200n8"
`
	got := GrubAppend(cfg)
	if got["ignition.config.url"] != "http://10.0.0.1:8080/matchbox/ignition?mac=52:54:00:00:01:01&os=installed" {
		t.Errorf("ignition.config.url = %q", got["ignition.config.url"])
	}
	if _, ok := got["flatcar.autologin"]; !ok {
		t.Errorf("$linux_append was not expanded: %v", got)
	}
	if _, ok := got["console"]; ok {
		t.Errorf("linux_console read as linux_append: %v", got)
	}
	if got := GrubAppend("set linux_append=\"a=1\"\nset linux_append=\"b=2\"\n"); got["a"] != "" || got["b"] != "2" {
		t.Errorf("a later assignment did not replace an earlier one: %v", got)
	}
	if got := GrubAppend(""); len(got) != 0 {
		t.Errorf("an empty grub.cfg appends %v", got)
	}
}
