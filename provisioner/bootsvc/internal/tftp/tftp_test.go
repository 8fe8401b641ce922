package tftp

import (
	"bytes"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// serve runs the server on a loopback socket and returns its address; the
// client below is pin/tftp's own, a real client over real UDP.
func serve(t testing.TB, root string, rec api.Recorder) string {
	t.Helper()
	return serveWith(t, Config{Root: root, Recorder: rec})
}

func serveWith(t testing.TB, cfg Config) string {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(conn); close(done) }()
	t.Cleanup(func() { s.Shutdown(); <-done })
	// pin/tftp turns on IP_PKTINFO (which tells it the interface, hence the
	// MTU and the blksize ceiling) when Serve starts; a request queued before
	// that gets the 512-byte ceiling. One refused request is answered only
	// once Serve runs, so every request after it sees the real ceiling.
	if _, _, err := fetch(t, conn.LocalAddr().String(), "..", 0); err == nil {
		t.Fatal("the warm-up request for .. was served")
	}
	return conn.LocalAddr().String()
}

func fetch(t testing.TB, addr, name string, blksize int) ([]byte, int64, error) {
	t.Helper()
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, 0, err
	}
	size := int64(-1)
	if it, ok := wt.(tftp.IncomingTransfer); ok {
		if n, ok := it.Size(); ok {
			size = n
		}
	}
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	return buf.Bytes(), size, err
}

func TestServesFilesWithBlksizeAndTsize(t *testing.T) {
	root := t.TempDir()
	want := make([]byte, 300_001) // not a multiple of any block size
	rand.Read(want)
	os.WriteFile(filepath.Join(root, "undionly.kpxe"), want, 0o644)
	events := make(chan api.Event, 10)
	addr := serve(t, root, api.RecorderFunc(func(e api.Event) { events <- e }))

	for _, c := range []struct {
		name    string
		blksize int
	}{{"undionly.kpxe", 0}, {"/undionly.kpxe", 1432}, {`\undionly.kpxe`, 8192}} {
		got, size, err := fetch(t, addr, c.name, c.blksize)
		if err != nil {
			t.Fatalf("%s (blksize %d): %v", c.name, c.blksize, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: got %d bytes, want the file's %d", c.name, len(got), len(want))
		}
		if size != int64(len(want)) {
			t.Errorf("%s: tsize = %d, want %d", c.name, size, len(want))
		}
	}
	// The server records a transfer once the client's last ACK is in,
	// which can be just after the client returned.
	for i := 0; i < 3; i++ {
		select {
		case e := <-events:
			if e.Kind != api.KindTFTP || e.Message != "undionly.kpxe 300001 bytes" || !strings.HasPrefix(e.Source, "127.0.0.1:") {
				t.Fatalf("event %d = %+v", i, e)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d tftp events for 3 transfers", i)
		}
	}
}

func TestRefusesTraversalSymlinksAndWrites(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644)
	root := filepath.Join(t.TempDir(), "boot")
	os.Mkdir(root, 0o755)
	os.WriteFile(filepath.Join(root, "ok"), []byte("ok"), 0o644)
	// The folder's own symlinks are followed (Debian's ipxe.efi is one).
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(root, "linked"))
	addr := serve(t, root, nil)

	for _, name := range []string{"../" + filepath.Base(outside) + "/secret", "/../../etc/passwd", "a/../../ok", "", ".", "missing"} {
		if got, _, err := fetch(t, addr, name, 0); err == nil {
			t.Errorf("%q was served (%q)", name, got)
		}
	}
	if got, _, err := fetch(t, addr, "ok", 0); err != nil || string(got) != "ok" {
		t.Fatalf("a file inside the root: %q %v", got, err)
	}
	if got, _, err := fetch(t, addr, "linked", 0); err != nil || string(got) != "secret" {
		t.Fatalf("a symlink the folder holds: %q %v", got, err)
	}
	c, _ := tftp.NewClient(addr)
	rf, err := c.Send("new", "octet")
	if err == nil {
		_, err = rf.ReadFrom(strings.NewReader("data"))
	}
	if err == nil {
		t.Error("a write request was accepted")
	}
	if _, err := os.Stat(filepath.Join(root, "new")); err == nil {
		t.Error("a written file appeared in the boot-files folder")
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{"ipxe.efi": "ipxe.efi", "/ipxe.efi": "ipxe.efi", `\EFI\ipxe.efi`: "EFI/ipxe.efi", "a//b/./c": "a/b/c"} {
		if got, err := CleanName(in); err != nil || got != want {
			t.Errorf("CleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"..", "a/../../b", "/", "x\x00y"} {
		if _, err := CleanName(in); err == nil {
			t.Errorf("CleanName(%q) accepted", in)
		}
	}
}
