package ui

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/provisioner/orchestrator"
	"github.com/racker/racker/provisioner/plan"
)

// get asks the view for a page, without gzip.
func get(t *testing.T, s http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func newServer(t testing.TB, src Source) *Server {
	t.Helper()
	s, err := New(Config{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tidy validates a page with HTML Tidy (Debian's tidy, 5.x: an HTML5
// checker that runs offline). Every warning counts: the page must come
// out clean, not merely parse (html.Parse below accepts anything, as
// browsers do, so it only serves the structural checks).
func tidy(t *testing.T, name string, page []byte) {
	t.Helper()
	bin := testenv.RequireCommand(t, "tidy")
	path := filepath.Join(t.TempDir(), name+".html")
	if err := os.WriteFile(path, page, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-quiet", "-errors", "-utf8", "--show-warnings", "yes", "--gnu-emacs", "yes",
		// Empty elements are valid HTML (the status LED is one); tidy
		// would only drop them as a clean-up.
		"--drop-empty-elements", "no", path)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("tidy finds problems in the %s page (%v):\n%s", name, err, out)
	}
}

// A 126-machine rack (the management node and 125 servers, in every
// phase) renders to a page that validates, with every machine drawn once
// in nodes.csv order, the same in the plain table, and nothing fetched
// from elsewhere.
func TestPageFor126NodesValidates(t *testing.T) {
	tr := newTestRack(t, 126)
	tr.busyRack(time.Now())
	s := newServer(t, tr.src)
	rec := get(t, s, "/")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /: %d %s", rec.Code, rec.Body)
	}
	page := rec.Body.Bytes()
	tidy(t, "index", page)

	// As a browser without JavaScript reads it: the plain table in
	// <noscript> is part of the document then.
	doc, err := html.ParseWithOptions(bytes.NewReader(page), html.ParseOptionEnableScripting(false))
	if err != nil {
		t.Fatal(err)
	}
	var units, rows []*html.Node
	ids := map[string]bool{}
	walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		if id := attr(n, "id"); id != "" {
			if ids[id] {
				t.Errorf("id %q twice", id)
			}
			ids[id] = true
		}
		for _, a := range []string{"src", "href"} {
			if v := attr(n, a); strings.Contains(v, "//") {
				t.Errorf("<%s %s=%q>: the page loads nothing from elsewhere", n.Data, a, v)
			}
		}
		if n.Data == "li" && hasClass(n, "unit") && !inTemplate(n) {
			units = append(units, n)
		}
		if n.Data == "tr" && n.Parent != nil && n.Parent.Data == "tbody" && within(n, "plain") {
			rows = append(rows, n)
		}
	})
	all := tr.plan.All()
	if len(all) != 126 || len(units) != 126 || len(rows) != 126 {
		t.Fatalf("plan %d machines, drawing %d units, table %d rows: want 126 each", len(all), len(units), len(rows))
	}
	byRow := map[int]plan.Node{}
	for _, n := range all {
		byRow[n.Index] = n
	}
	st, _ := orchestrator.Load(tr.dir)
	mgmt := 0
	for i, u := range units {
		want := byRow[i]
		if attr(u, "data-mac") != want.PrimaryMAC {
			t.Fatalf("unit %d is %s, nodes.csv row %d is %s", i, attr(u, "data-mac"), i, want.PrimaryMAC)
		}
		if !strings.Contains(text(u), want.Hostname) {
			t.Errorf("unit %d does not show its hostname %s: %q", i, want.Hostname, text(u))
		}
		if hasClass(u, "mgmt") {
			mgmt++
			if want.Role != plan.Management {
				t.Errorf("unit %d marked management", i)
			}
			continue
		}
		if rec := st.Nodes[want.PrimaryMAC]; !hasClass(u, "p-"+string(rec.Phase)) {
			t.Errorf("unit %d (%s) lacks its phase colour p-%s: %q", i, want.Hostname, rec.Phase, attr(u, "class"))
		}
		for _, f := range []string{"BMC ", "power ", "boot ", "gen "} {
			if !strings.Contains(text(u), f) {
				t.Errorf("unit %d shows no %q: %q", i, f, text(u))
			}
		}
	}
	if mgmt != 1 {
		t.Errorf("%d units marked as the management node, want 1", mgmt)
	}
	failed := units[1+3] // busyRack fails the fourth server
	if !hasClass(failed, "p-failed") || !hasClass(failed, "warn") || !strings.Contains(text(rows[4]), "download of the image failed") {
		t.Errorf("the failed node shows neither its colour nor its reason: unit %q, row %q", attr(failed, "class"), text(rows[4]))
	}
	if !strings.Contains(string(page), `<progress id="progress" max="100" value="`) {
		t.Error("no progress bar")
	}
}

// A node's own page (the panel, without JavaScript) validates too and
// tells its story.
func TestNodePageValidates(t *testing.T) {
	tr := newTestRack(t, 8)
	now := time.Now().Add(-time.Minute)
	n := tr.server(2)
	tr.move(n, orchestrator.BMCCheck, "a --parallel slot is free", now)
	tr.move(n, orchestrator.Failed, "the node reported failed: flatcar-install: <download> failed", now.Add(10*time.Second),
		func(r *orchestrator.Node) { r.Reason = "the node reported failed: flatcar-install: <download> failed" })
	tr.console(n.Hostname, "\x1b[1mtestos: starting\x1b[0m\r\nflatcar-install: download failed\r\n")
	s := newServer(t, tr.src)
	rec := get(t, s, "/node/"+strings.ToUpper(n.PrimaryMAC))
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	tidy(t, "node", rec.Body.Bytes())
	body := rec.Body.String()
	for _, want := range []string{"a --parallel slot is free", "&lt;download&gt; failed", "testos: starting\nflatcar-install: download failed"} {
		if !strings.Contains(body, want) {
			t.Errorf("node page lacks %q", want)
		}
	}
	if strings.Contains(body, "\x1b") {
		t.Error("terminal escapes reach the page")
	}
	if rec := get(t, s, "/node/52:54:99:99:99:99"); rec.Code != http.StatusNotFound {
		t.Errorf("a MAC not in the rack: %d, want 404", rec.Code)
	}
	if rec := get(t, s, "/node/..%2f..%2fetc"); rec.Code != http.StatusNotFound {
		t.Errorf("not a MAC: %d, want 404", rec.Code)
	}
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, c string) bool {
	for _, f := range strings.Fields(attr(n, "class")) {
		if f == c {
			return true
		}
	}
	return false
}

func inTemplate(n *html.Node) bool {
	for p := n.Parent; p != nil; p = p.Parent {
		if p.Data == "template" {
			return true
		}
	}
	return false
}

func within(n *html.Node, id string) bool {
	for p := n.Parent; p != nil; p = p.Parent {
		if attr(p, "id") == id {
			return true
		}
	}
	return false
}

func text(n *html.Node) string {
	var b strings.Builder
	walk(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
			b.WriteByte(' ')
		}
	})
	return b.String()
}

// BenchmarkIndexPage101 is the server's part of a first paint: a fresh
// status merge of a 101-machine rack (the state file read and decoded, the
// plan joined) and the page rendered and gzipped, as a browser asks for it.
func BenchmarkIndexPage101(b *testing.B) {
	tr := newTestRack(b, 101)
	tr.busyRack(time.Now())
	s, err := New(Config{Source: tr.src, Poll: time.Nanosecond}) // never reuse a merge
	if err != nil {
		b.Fatal(err)
	}
	var size int
	for b.Loop() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(size), "gzip-bytes")
}
