package rack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/netenv"
)

// A management node whose first process ends without a word is booted
// once more, and the error says how it ended; one that says why it stops
// is not retried, and its words are in the error. /bin/true and a shell
// script stand in for the node's first process (root: namespaces).
func TestAManagementNodeThatEndsSilentlyIsBootedOnceMore(t *testing.T) {
	testenv.RequireRoot(t)
	s := &State{Name: fmt.Sprintf("mb%d", os.Getpid()%100000), Dir: t.TempDir()}
	netenv.ForTest(t, netenv.Topology{Namespaces: []string{s.MgmtNamespace()}})
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	err := bootMgmtRetrying(context.Background(), s, s.Node(), Config{SimBinary: "/bin/true"}, log)
	var silent *silentEnd
	if !errors.As(err, &silent) || silent.state != "exit status 0" {
		t.Fatalf("a node that ends silently: %v", err)
	}
	if n, again := strings.Count(logs.String(), "management node booted"), strings.Count(logs.String(), "booting it again"); n != 2 || again != 1 {
		t.Errorf("booted %d times, retried %d times; want 2 and 1:\n%s", n, again, logs.String())
	}

	logs.Reset()
	noisy := filepath.Join(t.TempDir(), "noisy")
	if err := os.WriteFile(noisy, []byte("#!/bin/sh\necho 'mgmt-boot: cannot mount /usr' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err = bootMgmtRetrying(context.Background(), s, s.Node(), Config{SimBinary: noisy}, log)
	if err == nil || errors.As(err, &silent) || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "cannot mount /usr") {
		t.Fatalf("a node that says why it stops: %v", err)
	}
	if strings.Contains(logs.String(), "booting it again") {
		t.Errorf("a node that said why it stopped was booted again:\n%s", logs.String())
	}
}
