package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/racker/racker/provisioner/internal/atomicfile"
)

// DefaultAddr is where the view listens unless told otherwise: loopback on
// the management node, reached from a laptop through an SSH tunnel.
const DefaultAddr = "127.0.0.1:8088"

// TokenFile is the view's token in the state folder (mode 0600).
const TokenFile = "ui-token"

// cookieName carries the token after the first visit with ?token=.
const cookieName = "racker_ui"

// Listen is a checked --ui address.
type Listen struct {
	Addr netip.AddrPort
	// NeedsToken: the address is not loopback, so every request must carry
	// the token (racker ui token).
	NeedsToken bool
}

// CheckAddr checks a --ui address. It must name one IP address and a
// port: an address every interface shares (0.0.0.0, ::, an empty host)
// would put the view on the internal PXE network too, and so would any
// address inside one of pxe (the plan's subnet, the PXE interface's
// prefixes), which the nodes, their BMCs and anything netbooting there
// can reach. Loopback needs no token; anything else does.
func CheckAddr(addr string, pxe []netip.Prefix, pxeInterface string) (Listen, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return Listen{}, fmt.Errorf("--ui %q: want IP:PORT, e.g. %s: %w", addr, DefaultAddr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return Listen{}, fmt.Errorf("--ui %q: port %q: want 1-65535", addr, portStr)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	if host == "" {
		return Listen{}, fmt.Errorf("--ui %q: no address listens on every interface, the internal PXE network included; name one address (%s, or an address of the public network with racker ui token)", addr, DefaultAddr)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return Listen{}, fmt.Errorf("--ui %q: %q is not an IP address (the view listens on one address, never a name that may resolve to the PXE network)", addr, host)
	}
	ip = ip.Unmap()
	if ip.Zone() != "" {
		return Listen{}, fmt.Errorf("--ui %q: an address with a zone is not supported", addr)
	}
	if ip.IsUnspecified() {
		return Listen{}, fmt.Errorf("--ui %q: %s listens on every interface, the internal PXE network included; name one address (%s, or an address of the public network with racker ui token)", addr, ip, DefaultAddr)
	}
	for _, p := range pxe {
		if p.IsValid() && p.Contains(ip) {
			where := "the internal PXE network " + p.Masked().String()
			if pxeInterface != "" {
				where += " (interface " + pxeInterface + ")"
			}
			return Listen{}, fmt.Errorf("--ui %q: %s is on %s; the rack view never listens there, where every node and BMC can reach it: use %s and an SSH tunnel, or an address of another network (with its token: racker ui token)", addr, ip, where, DefaultAddr)
		}
	}
	return Listen{Addr: netip.AddrPortFrom(ip, uint16(port)), NeedsToken: !ip.IsLoopback()}, nil
}

// TokenPath is the token file of a state folder.
func TokenPath(stateDir string) string { return filepath.Join(stateDir, TokenFile) }

// ReadToken reads the view's token; the file must be mode 0600 (or
// stricter), as a secret that other users could read is no secret.
func ReadToken(stateDir string) (string, error) {
	path := TokenPath(stateDir)
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading the rack view's token: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("reading the rack view's token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("the rack view's token %s is mode %04o: other users can read it; chmod 600 it, or remove it and run racker ui token --new", path, fi.Mode().Perm())
	}
	b := make([]byte, 256)
	n, err := f.Read(b)
	if err != nil {
		return "", fmt.Errorf("reading the rack view's token %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b[:n]))
	if len(tok) < 32 {
		return "", fmt.Errorf("the rack view's token %s is too short (%d characters); run racker ui token --new", path, len(tok))
	}
	return tok, nil
}

// EnsureToken returns the view's token, making one (256 random bits) when
// the state folder has none.
func EnsureToken(stateDir string) (string, error) {
	tok, err := ReadToken(stateDir)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return tok, err
	}
	return NewToken(stateDir)
}

// NewToken makes a new token, replacing the old one: pages that used the
// old one must be opened with the new one.
func NewToken(stateDir string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making the rack view's token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return "", fmt.Errorf("making the rack view's token: %w", err)
	}
	if err := atomicfile.Write(TokenPath(stateDir), []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("making the rack view's token: %w", err)
	}
	return tok, nil
}

// tokenMatches compares in constant time: the hashes have one length, so
// neither the token's length nor its first differing byte shows in the
// time an answer takes.
func tokenMatches(given, want string) bool {
	if given == "" || want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// requireToken lets a request through when it carries the token: a
// cookie set by an earlier visit, an Authorization: Bearer header, or
// ?token= (answered with the cookie and a redirect to the same page
// without it, so the token stays out of the address bar and the history).
// The token is read from the state folder on every check, so racker ui
// token --new takes effect at once.
func requireToken(stateDir string, next http.Handler, onError func(error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want, err := ReadToken(stateDir)
		if err != nil {
			onError(err)
			http.Error(w, "the rack view's token cannot be read on the management node; see racker serve's log", http.StatusInternalServerError)
			return
		}
		if q := r.URL.Query().Get("token"); q != "" {
			if !tokenMatches(q, want) {
				unauthorized(w)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: q, Path: "/", HttpOnly: true,
				SameSite: http.SameSiteStrictMode, MaxAge: 30 * 24 * 3600})
			u := *r.URL
			qs := u.Query()
			qs.Del("token")
			u.RawQuery = qs.Encode()
			http.Redirect(w, r, (&url.URL{Path: u.Path, RawQuery: u.RawQuery}).String(), http.StatusSeeOther)
			return
		}
		given := ""
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			given = strings.TrimPrefix(a, "Bearer ")
		} else if c, err := r.Cookie(cookieName); err == nil {
			given = c.Value
		}
		if !tokenMatches(given, want) {
			unauthorized(w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprint(w, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Racker: token needed</title></head>
<body><h1>This rack view needs its token</h1>
<p>On the management node, run <code>racker ui token</code> and open this address with <code>?token=</code> and the token appended once; the browser then keeps it in a cookie.</p>
</body></html>
`)
}
