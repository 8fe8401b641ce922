package testos

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

type seen struct {
	method, path, ctype, body string
}

// recorder is a real HTTP server on loopback that records what curl sent.
func recorder(t *testing.T, status int) (*httptest.Server, func() []seen) {
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.RequestURI(), r.Header.Get("Content-Type"), string(b)})
		mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, "answer")
	}))
	t.Cleanup(srv.Close)
	return srv, func() []seen { mu.Lock(); defer mu.Unlock(); return append([]seen(nil), got...) }
}

func runCurl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Curl(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCurlContractCallback(t *testing.T) {
	srv, got := recorder(t, http.StatusNoContent)
	body := `{"mac":"00:11:22:33:44:10","event":"booted"}`
	code, _, stderr := runCurl("-fsS", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", body, srv.URL+"/api/v1/events")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := seen{"POST", "/api/v1/events", "application/json", body}
	if g := got(); len(g) != 1 || g[0] != want {
		t.Errorf("server saw %+v, want %+v", g, want)
	}
}

func TestCurlDataFileAndDefaults(t *testing.T) {
	srv, got := recorder(t, http.StatusOK)
	file := filepath.Join(t.TempDir(), "body")
	os.WriteFile(file, []byte("a\nb\n"), 0o600)
	code, out, _ := runCurl("-s", "--data", "@"+file, "-d", "c=1", srv.URL+"/x")
	if code != 0 || out != "answer" {
		t.Fatalf("exit %d, output %q", code, out)
	}
	g := got()
	if len(g) != 1 || g[0].method != "POST" || g[0].body != "ab&c=1" || g[0].ctype != "application/x-www-form-urlencoded" {
		t.Errorf("server saw %+v (--data drops newlines of @file, joins with &, POST by default)", g)
	}
	code, _, _ = runCurl("-s", "--data-binary", "@"+file, srv.URL+"/y")
	if g := got(); code != 0 || g[len(g)-1].body != "a\nb\n" {
		t.Errorf("--data-binary @file sent %q", g[len(g)-1].body)
	}
	out2 := filepath.Join(t.TempDir(), "out")
	if code, _, _ := runCurl("-s", "-o", out2, srv.URL+"/z"); code != 0 {
		t.Errorf("-o: exit %d", code)
	}
	if b, _ := os.ReadFile(out2); string(b) != "answer" {
		t.Errorf("-o wrote %q", b)
	}
}

func TestCurlErrors(t *testing.T) {
	srv, _ := recorder(t, http.StatusForbidden)
	if code, _, stderr := runCurl("-fsS", srv.URL); code != 22 || !strings.Contains(stderr, "403") {
		t.Errorf("-f on 403: exit %d, stderr %q; want 22 and the status", code, stderr)
	}
	if code, _, stderr := runCurl("-fs", srv.URL); code != 22 || stderr != "" {
		t.Errorf("-fs on 403: exit %d, stderr %q; want 22 and silence", code, stderr)
	}
	if code, _, _ := runCurl("-s", srv.URL); code != 0 {
		t.Errorf("no -f on 403: exit %d, want 0 as curl does", code)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()
	if code, _, _ := runCurl("-fsS", "--retry", "1", "--retry-delay", "0", closed); code != 7 {
		t.Errorf("connection refused: exit %d, want 7", code)
	}
	for _, args := range [][]string{{"--bogus", srv.URL}, {"-fsS"}, {"-X"}, {srv.URL, srv.URL}} {
		if code, _, _ := runCurl(args...); code != 2 {
			t.Errorf("curl %q: exit %d, want 2 (usage)", args, code)
		}
	}
}
