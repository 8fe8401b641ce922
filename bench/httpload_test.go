package main

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHTTPLoadRefusesWrongBytes checks the bench's own checks (fakes on
// loopback, no namespaces): a server that answers fast but wrong (a flipped
// byte, a short body, the whole file for a range) must fail the run, and a
// right one must count every byte.
func TestHTTPLoadRefusesWrongBytes(t *testing.T) {
	image := make([]byte, 3*checkBlock+12345)
	rand.Read(image)
	bad := bytes.Clone(image)
	bad[2*checkBlock+7] ^= 1
	serve := func(content []byte, ignoreRange bool) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ignoreRange {
				r.Header.Del("Range")
			}
			http.ServeContent(w, r, "image", time.Time{}, bytes.NewReader(content))
		}))
		t.Cleanup(s.Close)
		return s.URL
	}
	short := serve(image[:len(image)-1], false)
	good, flipped, noRange := serve(image, false), serve(bad, false), serve(image, true)

	l := newHTTPLoad("", nil, image, 2, 3*checkBlock)
	defer l.close()
	n, _, err := l.run(good, 2, 0, 200*time.Millisecond)
	if err != nil || n < int64(len(image)) {
		t.Fatalf("whole image from a right server: %d bytes, %v", n, err)
	}
	if n, _, err := l.run(good, 2, 1<<20, 100*time.Millisecond); err != nil || n%(1<<20) != 0 || n == 0 {
		t.Fatalf("ranges from a right server: %d bytes, %v", n, err)
	}
	for _, c := range []struct {
		name, url string
		rangeSz   int
		want      string
	}{
		{"a flipped byte", flipped, 0, "CRC-32C differs"},
		{"a short image", short, 0, "want 200 and"},
		{"a flipped byte in ranges", flipped, 3 * checkBlock, "wrong bytes"},
		{"the whole image for a range", noRange, 1 << 20, "200 OK"},
	} {
		if _, _, err := l.run(c.url, 1, c.rangeSz, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}
