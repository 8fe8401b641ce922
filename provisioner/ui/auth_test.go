package ui

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestCheckAddr(t *testing.T) {
	pxe := []netip.Prefix{netip.MustParsePrefix("172.24.213.0/24"), netip.MustParsePrefix("10.9.0.7/16")}
	for _, c := range []struct {
		addr  string
		token bool
		err   string
	}{
		{addr: "127.0.0.1:8088"},
		{addr: "localhost:8088"},
		{addr: "[::1]:8088"},
		{addr: "192.0.2.10:8088", token: true},
		{addr: "[2001:db8::1]:443", token: true},
		{addr: "172.24.213.1:8088", err: "is on the internal PXE network 172.24.213.0/24 (interface eth1)"},
		{addr: "172.24.213.200:8088", err: "never listens there"},
		{addr: "10.9.250.1:8088", err: "internal PXE network 10.9.0.0/16"},
		{addr: "[::ffff:172.24.213.1]:8088", err: "internal PXE network"},
		{addr: "0.0.0.0:8088", err: "every interface"},
		{addr: "[::]:8088", err: "every interface"},
		{addr: ":8088", err: "every interface"},
		{addr: "mgmt.example:8088", err: "not an IP address"},
		{addr: "127.0.0.1", err: "want IP:PORT"},
		{addr: "127.0.0.1:0", err: "want 1-65535"},
		{addr: "127.0.0.1:99999", err: "want 1-65535"},
	} {
		l, err := CheckAddr(c.addr, pxe, "eth1")
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one saying %q", c.addr, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.addr, err)
		case c.err == "" && l.NeedsToken != c.token:
			t.Errorf("%s: needs token %v, want %v", c.addr, l.NeedsToken, c.token)
		}
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadToken(dir); !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("no file: %v", err)
	}
	tok, err := EnsureToken(dir)
	if err != nil || len(tok) < 40 {
		t.Fatalf("EnsureToken: %q %v", tok, err)
	}
	fi, err := os.Stat(TokenPath(dir))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v %v, want 0600", fi.Mode(), err)
	}
	again, err := EnsureToken(dir)
	if err != nil || again != tok {
		t.Fatalf("EnsureToken again made another token: %q %v", again, err)
	}
	os.Chmod(TokenPath(dir), 0o644)
	if _, err := ReadToken(dir); err == nil || !strings.Contains(err.Error(), "mode 0644") {
		t.Errorf("a token others can read: %v", err)
	}
	os.Chmod(TokenPath(dir), 0o600)
	if fresh, err := NewToken(dir); err != nil || fresh == tok {
		t.Errorf("NewToken: %q %v", fresh, err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

// Beyond loopback every request needs the token: none, a wrong one or a
// rotated one gets 401; ?token= sets a cookie and redirects without it.
func TestTokenRequired(t *testing.T) {
	tr := newTestRack(t, 4)
	dir := t.TempDir()
	tok, err := EnsureToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Source: tr.src, TokenDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	do := func(path string, mod func(*http.Request)) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if mod != nil {
			mod(req)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	for _, path := range []string{"/", "/api/rack", "/api/stream", "/assets/app.js", "/node/" + tr.server(0).PrimaryMAC} {
		if rec := do(path, nil); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s without token: %d", path, rec.Code)
		}
	}
	if rec := do("/?token=wrong"+tok[5:], nil); rec.Code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", rec.Code)
	}
	if rec := do("/api/rack", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok+"x") }); rec.Code != http.StatusUnauthorized {
		t.Errorf("longer token: %d", rec.Code)
	}
	rec := do("/?token="+tok, nil)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" {
		t.Fatalf("?token=: %d to %q", rec.Code, rec.Header().Get("Location"))
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie: %+v", cookies)
	}
	if rec := do("/", func(r *http.Request) { r.AddCookie(cookies[0]) }); rec.Code != http.StatusOK {
		t.Errorf("with the cookie: %d", rec.Code)
	}
	if rec := do("/api/rack", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }); rec.Code != http.StatusOK {
		t.Errorf("with a bearer token: %d", rec.Code)
	}
	if _, err := NewToken(dir); err != nil {
		t.Fatal(err)
	}
	if rec := do("/", func(r *http.Request) { r.AddCookie(cookies[0]) }); rec.Code != http.StatusUnauthorized {
		t.Errorf("the old token after racker ui token --new: %d", rec.Code)
	}
}
