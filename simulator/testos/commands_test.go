package testos

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSystemctl(t *testing.T) {
	var got []int
	act := func(cmd int) error { got = append(got, cmd); return nil }
	var out, errb bytes.Buffer
	for _, args := range [][]string{{"reboot"}, {"--no-block", "poweroff"}, {"daemon-reload"}} {
		if code := Systemctl(args, &out, &errb, act); code != 0 {
			t.Errorf("systemctl %q: exit %d", args, code)
		}
	}
	if len(got) != 2 || got[0] != unix.LINUX_REBOOT_CMD_RESTART || got[1] != unix.LINUX_REBOOT_CMD_POWER_OFF {
		t.Errorf("actions = %#x", got)
	}
	if code := Systemctl([]string{"start", "x.service"}, &out, &errb, act); code != 1 || len(got) != 2 {
		t.Errorf("unsupported verb: exit %d", code)
	}
	if code := Systemctl([]string{"reboot"}, &out, &errb, func(int) error { return errors.New("EPERM") }); code != 1 {
		t.Errorf("a failing reboot: exit %d", code)
	}
}
