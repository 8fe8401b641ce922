package testos

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSplitCommandContractLine(t *testing.T) {
	line := `/usr/bin/curl -fsS -X POST -H "Content-Type: application/json" --data-binary '{"mac":"00:11:22:33:44:10","event":"booted"}' http://172.24.213.1:8080/api/v1/events`
	cmd, err := SplitCommand(line)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/usr/bin/curl", "-fsS", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", `{"mac":"00:11:22:33:44:10","event":"booted"}`, "http://172.24.213.1:8080/api/v1/events"}
	if !reflect.DeepEqual(cmd.Argv, want) {
		t.Errorf("argv = %q\nwant %q", cmd.Argv, want)
	}
	cmd, err = SplitCommand(`-/bin/echo a\ b "c\"d" 100%% \n`)
	if err != nil {
		t.Fatal(err)
	}
	if !cmd.IgnoreFailed || !reflect.DeepEqual(cmd.Argv, []string{"/bin/echo", "a b", `c"d`, "100%", "\n"}) {
		t.Errorf("got %+v", cmd)
	}
	for _, bad := range []string{`/bin/echo "open`, "   ", "-"} {
		if _, err := SplitCommand(bad); err == nil {
			t.Errorf("SplitCommand(%q) accepted it", bad)
		}
	}
}

func TestParseUnit(t *testing.T) {
	spec := ParseUnit("x.service", `[Unit]
Description=x
OnFailure=fail-a.service fail-b.service
[Service]
Type=oneshot
# a comment
ExecStartPre=/bin/pre
ExecStart=/bin/one \
  continued
ExecStart=/bin/two
ExecStartPost=/bin/post
[Install]
ExecStart=/not/a/service/key
`, "[Service]\nExecStart=\nExecStart=/bin/dropin\n")
	if !reflect.DeepEqual(spec.Pre, []string{"/bin/pre"}) || !reflect.DeepEqual(spec.Post, []string{"/bin/post"}) {
		t.Errorf("pre/post = %q / %q", spec.Pre, spec.Post)
	}
	if !reflect.DeepEqual(spec.Start, []string{"/bin/dropin"}) {
		t.Errorf("start = %q, want the drop-in to reset and replace ExecStart", spec.Start)
	}
	if !reflect.DeepEqual(spec.OnFailure, []string{"fail-a.service", "fail-b.service"}) {
		t.Errorf("OnFailure = %q", spec.OnFailure)
	}
	if got := ParseUnit("y", "[Service]\nExecStart=/bin/one \\\n  continued\n").Start; len(got) != 1 || !strings.HasPrefix(got[0], "/bin/one") || !strings.HasSuffix(got[0], "continued") {
		t.Errorf("continuation = %q", got)
	}
}

func TestRunUnitsOrderAndOnFailure(t *testing.T) {
	str := func(s string) *string { return &s }
	units := []Unit{
		{Name: "install.service", Contents: str("[Unit]\nOnFailure=report.service\n[Service]\nExecStartPre=/bin/pre\nExecStart=-/bin/may-fail\nExecStart=/bin/fails\nExecStart=/bin/never\n")},
		{Name: "after.service", Contents: str("[Service]\nExecStart=/bin/after\nExecStartPost=/bin/post\n")},
		{Name: "report.service", Contents: str("[Service]\nExecStart=/bin/report failed\n")},
		{Name: "empty.service"},
	}
	var ran []string
	run := func(_ context.Context, argv []string) error {
		ran = append(ran, strings.Join(argv, " "))
		if argv[0] == "/bin/fails" || argv[0] == "/bin/may-fail" {
			return errors.New("exit status 1")
		}
		return nil
	}
	failed := RunUnits(context.Background(), t.TempDir(), units, run, func(string) {})
	want := []string{"/bin/pre", "/bin/may-fail", "/bin/fails", "/bin/report failed", "/bin/after", "/bin/post", "/bin/report failed"}
	if !reflect.DeepEqual(ran, want) {
		t.Errorf("ran %q\nwant %q", ran, want)
	}
	if !reflect.DeepEqual(failed, []string{"install.service", "empty.service"}) {
		t.Errorf("failed = %q", failed)
	}
}
