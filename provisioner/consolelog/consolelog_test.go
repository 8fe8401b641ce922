package consolelog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/bmc"
)

func TestFileRotatesAtTheCapAndKeepsAFew(t *testing.T) {
	path := Path(t.TempDir(), "racker-worker-0")
	f, err := Open(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		fmt.Fprintf(f, "line %02d of the console, 30 bytes\n", i) // 34 bytes
	}
	f.Close()
	var total int64
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if st.Size() > 100 {
			t.Errorf("%s has %d bytes, over the 100-byte cap", p, st.Size())
		}
		total += st.Size()
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("a fourth file is kept: %v", err)
	}
	tail, err := Tail(path, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := "line 16 of the console, 30 bytes\nline 17 of the console, 30 bytes\nline 18 of the console, 30 bytes\nline 19 of the console, 30 bytes\n"
	if tail != want {
		t.Errorf("tail 4 = %q, want %q", tail, want)
	}
	// The tail reaches into the rotated files when the current one is short.
	if tail, _ := Tail(path, 6); !strings.HasPrefix(tail, "line 14") {
		t.Errorf("tail 6 = %q", tail)
	}
	if tail, err := Tail(filepath.Join(t.TempDir(), "none.log"), 5); tail != "" || err != nil {
		t.Errorf("tail of no log = %q, %v", tail, err)
	}
	if FileName("00:11:22:33:44:10") != "00-11-22-33-44-10.log" || FileName("../x") != "..-x.log" {
		t.Errorf("file names: %q %q", FileName("00:11:22:33:44:10"), FileName("../x"))
	}
}

// The recorder attaches to a node's console through its BMC (an in-memory
// fake here, a unit test), writes what it prints, attaches again when the
// console is lost, and says so in the log.
func TestRecorderAttachesAndReattaches(t *testing.T) {
	dir := t.TempDir()
	b := bmc.Fake("consolelog-test")
	t.Cleanup(func() { bmc.ForgetFake("consolelog-test") })
	b.SetDead(true)
	c, err := bmc.Open(context.Background(), "fake://consolelog-test", bmc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{StateDir: dir, Retry: 20 * time.Millisecond}
	r.Record(ctx, "racker-worker-0", func(ctx context.Context) (io.ReadCloser, error) { return c.Console(ctx) })
	path := Path(dir, "racker-worker-0")
	waitLog := func(what string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(path)
			if strings.Contains(string(b), what) {
				return string(b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the log never had %q:\n%s", what, b)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLog("cannot attach to the console")
	b.SetDead(false)
	waitLog("console attached")
	node := waitSerial(t, b)
	io.WriteString(node, "flatcar-install: writing the image\r\n")
	waitLog("flatcar-install: writing the image")
	node.Close() // the console is lost (a BMC reset, a --force elsewhere)
	waitLog("console lost")
	node = waitSerial(t, b)
	io.WriteString(node, "second boot")
	log := waitLog("second boot")
	cancel()
	r.Wait()
	log, _ = Tail(path, 100)
	if strings.Count(log, "cannot attach") != 1 {
		t.Errorf("the same failure is logged more than once:\n%s", log)
	}
	if !strings.HasSuffix(log, "recording stopped\n") || !strings.Contains(log, "second boot\n--- racker:") {
		t.Errorf("the recorder's own lines do not start lines of their own:\n%s", log)
	}
}

// waitSerial waits for the recorder to attach and returns the node's side
// of the fake serial port.
func waitSerial(t *testing.T, b *bmc.FakeBMC) io.ReadWriteCloser {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s := b.Serial(); s != nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatal("the recorder never attached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRecorderStopsOnADriverWithoutConsole(t *testing.T) {
	dir := t.TempDir()
	r := &Recorder{StateDir: dir, Retry: time.Millisecond}
	r.Record(context.Background(), "n", func(context.Context) (io.ReadCloser, error) {
		return nil, fmt.Errorf("BMC x: opening the console: %w", bmc.ErrNoConsole)
	})
	r.Wait()
	log, _ := Tail(Path(dir, "n"), 10)
	if !strings.Contains(log, "no console to record") || errors.Is(nil, bmc.ErrNoConsole) {
		t.Errorf("log: %q", log)
	}
}
