package web

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/racker/racker/provisioner/images"
)

// TestAssetDeadlineFollowsProgress: an image download that keeps going
// gets the whole file even when it takes far longer than the stall
// timeout; one that stops reading is cut off. Steps and the stall timeout
// are shrunk (1 MiB, 1 s) and the image is larger than loopback's socket
// buffers, so the server really waits on the reader.
func TestAssetDeadlineFollowsProgress(t *testing.T) {
	r := newRig(t)
	img := randomBytes(t, 32<<20)
	if err := os.WriteFile(filepath.Join(r.release, images.Image), img, 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(step int64, stall time.Duration) { assetStep, assetStall = step, stall }(assetStep, assetStall)
	assetStep, assetStall = 1<<20, time.Second

	// download reads 256 KiB at a time, sleeping pause(bytes so far) after
	// each read, and returns what it got.
	download := func(pause func(got int) time.Duration) []byte {
		t.Helper()
		resp, err := http.Get(r.http.URL + "/assets/testos/current/" + images.Image)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("image: %s", resp.Status)
		}
		var got bytes.Buffer
		buf := make([]byte, 256<<10)
		for {
			n, err := io.ReadFull(resp.Body, buf)
			got.Write(buf[:n])
			if err != nil {
				return got.Bytes()
			}
			time.Sleep(pause(got.Len()))
		}
	}

	start := time.Now()
	steady := download(func(int) time.Duration { return 25 * time.Millisecond })
	took := time.Since(start)
	if sha256.Sum256(steady) != sha256.Sum256(img) {
		t.Errorf("a steady slow download got %d of %d bytes (or other bytes) in %v", len(steady), len(img), took)
	}
	if took < 2*assetStall {
		t.Errorf("the steady download took %v, no longer than the stall timeout %v: it proves nothing", took, assetStall)
	}

	stalled := download(func(got int) time.Duration {
		if got == 1<<20 {
			return 4 * assetStall // stop reading for a while
		}
		return 0
	})
	if len(stalled) >= len(img) {
		t.Errorf("a download that stopped reading for %v was not cut off (stall timeout %v)", 4*assetStall, assetStall)
	}
}
