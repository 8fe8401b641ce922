package ui

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/racker/racker/internal/testenv"
	"github.com/racker/racker/provisioner/bootsvc/api"
	"github.com/racker/racker/provisioner/orchestrator"
)

// Browser tests: Debian's chromium, headless, driven by chromedp, against
// the view's real handlers and live updates. The rack is the testRack of
// helpers_test.go: real plan, real state folder and status merge; only the
// boot services' event journal is a fake.

// browser starts a headless Chromium (flags as this machine needs them:
// no sandbox as root, no background networking on a closed network),
// closed when the test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	ctx, closeIt := newBrowser(t)
	t.Cleanup(closeIt)
	return ctx
}

// newBrowser starts a headless Chromium and returns what closes it.
func newBrowser(t *testing.T) (context.Context, func()) {
	t.Helper()
	bin := testenv.RequireCommand(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1500, 1000))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	closeIt := func() { cancel(); cancelA() }
	if err := chromedp.Do(ctx); err != nil {
		closeIt()
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx, closeIt
}

// countingListener counts the bytes the server sends, headers included:
// what a browser's first view costs on the wire.
type countingListener struct {
	net.Listener
	sent atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &l.sent}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// serve runs the view for tr on loopback.
func serve(t *testing.T, tr *testRack) (string, *countingListener) {
	t.Helper()
	s, err := New(Config{Source: tr.src, Poll: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	ctx, cancel := context.WithCancel(context.Background())
	go s.Run(ctx)
	ts := httptest.NewUnstartedServer(s)
	ts.Listener = cl
	ts.Start()
	t.Cleanup(func() { cancel(); ts.CloseClientConnections(); ts.Close() })
	return ts.URL, cl
}

// screenshot saves the page as PNG among the test's artifacts (go test
// -artifacts keeps them; UI_SCREENSHOTS names a folder to copy them to).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dirs := []string{t.ArtifactDir()}
	if d := os.Getenv("UI_SCREENSHOTS"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		os.MkdirAll(d, 0o755)
		p := filepath.Join(d, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// waitFor waits until a JavaScript expression is true in the page.
func waitFor(t *testing.T, ctx context.Context, what, js string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, js, err)
	}
}

// The view in a browser: every node drawn in nodes.csv order; phases
// change live while the "bootstrap" runs, with no reload; a click shows a
// node's transitions and console tail, and a failed node its reason; the
// event stream filters by node; without JavaScript a plain table.
func TestBrowserLiveRackView(t *testing.T) {
	tr := newTestRack(t, 7)
	url, _ := serve(t, tr)
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the live stream", `document.documentElement.dataset.live === "1"`)
	macs := eval[[]string](t, ctx, `[...document.querySelectorAll('#rack .unit')].map(u => u.dataset.mac)`)
	var want []string
	for _, n := range tr.plan.All() {
		want = append(want, n.PrimaryMAC)
	}
	if strings.Join(macs, " ") != strings.Join(want, " ") {
		t.Fatalf("units %v, want every machine in nodes.csv order %v", macs, want)
	}
	eval[bool](t, ctx, `window.notReloaded = true`)

	// The bootstrap goes on: phases change, events come.
	n0, n1 := tr.server(0), tr.server(1)
	start := time.Now().Add(-40 * time.Second)
	tr.move(n0, orchestrator.BMCCheck, "a --parallel slot is free", start)
	tr.move(n0, orchestrator.PXERequested, "boot device PXE set, powered on", start.Add(5*time.Second))
	tr.journal.add(n0.PrimaryMAC, api.KindDHCP, "lease 172.24.213.2, client arch 0")
	tr.move(n0, orchestrator.Netbooting, "the node asked for DHCP", start.Add(10*time.Second))
	tr.move(n0, orchestrator.Installing, "the node called back installing", start.Add(20*time.Second))
	tr.journal.add(n0.PrimaryMAC, api.KindInstalling, "writing the OS to /dev/vda")
	tr.console(n0.Hostname, "testos: starting\r\n\x1b[32mflatcar-install: writing /dev/vda\x1b[0m\r\n")
	sel0 := "#" + unitID(n0.PrimaryMAC)
	waitFor(t, ctx, n0.Hostname+" installing", `document.querySelector("`+sel0+`.p-installing") !== null`)
	if !eval[bool](t, ctx, `window.notReloaded === true`) {
		t.Fatal("the page reloaded")
	}
	waitFor(t, ctx, "the event in the stream", `document.querySelector('#events li[data-mac="`+n0.PrimaryMAC+`"]') !== null`)
	screenshot(t, ctx, "rack-live")

	// A click: the node's transitions with causes and its console tail.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel0+" a"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the node's panel", `document.querySelector('#detail').dataset.loaded === "`+n0.PrimaryMAC+`"`)
	trans := eval[string](t, ctx, `document.querySelector('#d-trans').textContent`)
	cons := eval[string](t, ctx, `document.querySelector('#d-console').textContent`)
	if !strings.Contains(trans, "the node asked for DHCP") || !strings.Contains(trans, "the node called back installing") {
		t.Errorf("transitions: %q", trans)
	}
	if !strings.Contains(cons, "flatcar-install: writing /dev/vda") || strings.Contains(cons, "\x1b") {
		t.Errorf("console tail: %q", cons)
	}
	// The console is live too, and shows its end.
	tr.console(n0.Hostname, strings.Repeat("flatcar-install: writing\r\n", 200)+"flatcar-install: done\r\n")
	waitFor(t, ctx, "the console's new line", `document.querySelector('#d-console').textContent.includes("flatcar-install: done")`)
	waitFor(t, ctx, "the console's end in view", `(p => p.scrollTop > 0 && p.scrollTop + p.clientHeight >= p.scrollHeight - 4)(document.querySelector('#d-console'))`)
	screenshot(t, ctx, "node-panel")

	// A failed node: its reason, in the drawing and in its panel.
	reason := "the node reported failed: flatcar-install: download of flatcar_production_image.bin.bz2 failed"
	tr.move(n1, orchestrator.Failed, reason, time.Now(), func(r *orchestrator.Node) { r.Reason, r.Failures = reason, 1 })
	tr.journal.add(n1.PrimaryMAC, api.KindFailed, "flatcar-install: download failed")
	sel1 := "#" + unitID(n1.PrimaryMAC)
	waitFor(t, ctx, n1.Hostname+" failed", `document.querySelector("`+sel1+`.p-failed.warn") !== null`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel1+" a"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the failed node's panel", `document.querySelector('#detail').dataset.loaded === "`+n1.PrimaryMAC+`"`)
	if got := eval[string](t, ctx, `document.querySelector('#d-reason').textContent`); got != reason {
		t.Errorf("reason shown: %q, want %q", got, reason)
	}
	if eval[bool](t, ctx, `document.querySelector('#d-reason').hidden`) {
		t.Error("the reason is hidden")
	}
	// No console recorded for it: its events stand in.
	cnote := eval[string](t, ctx, `document.querySelector('#d-cnote').textContent + document.querySelector('#d-console').textContent`)
	if !strings.Contains(cnote, "No console recorded") || !strings.Contains(cnote, "failed flatcar-install: download failed") {
		t.Errorf("console fallback: %q", cnote)
	}
	screenshot(t, ctx, "failed-node")

	// The event stream, filtered by node: the node's events and its BMC's.
	tr.journal.add(n1.BMCMAC, api.KindDHCP, "BMC lease 172.24.213.105")
	waitFor(t, ctx, "the BMC's event", `document.querySelector('#events li[data-mac="`+n1.BMCMAC+`"]') !== null`)
	if got := eval[string](t, ctx, `document.querySelector('#events li[data-mac="`+n1.BMCMAC+`"] .k').textContent`); got != n1.Hostname+" BMC dhcp" {
		t.Errorf("the BMC's event is labelled %q", got)
	}
	eval[bool](t, ctx, `(() => { const s = document.querySelector('#filter'); s.value = "`+n1.PrimaryMAC+`"; s.dispatchEvent(new Event('change')); return true })()`)
	shown := eval[[]string](t, ctx, `[...document.querySelectorAll('#events li')].filter(li => !li.hidden).map(li => li.dataset.mac)`)
	if strings.Join(shown, " ") != n1.BMCMAC+" "+n1.PrimaryMAC {
		t.Errorf("filtered stream shows %v, want %s's BMC and node events only", shown, n1.Hostname)
	}
	if !eval[bool](t, ctx, `window.notReloaded === true`) {
		t.Fatal("the page reloaded")
	}

	// The address names the open node: opened from it, the panel is there.
	if got := eval[string](t, ctx, `location.hash`); got != "#node="+n1.PrimaryMAC {
		t.Errorf("address %q after opening %s", got, n1.Hostname)
	}
	lctx, lcancel := chromedp.NewContext(ctx)
	defer lcancel()
	if err := chromedp.Do(lctx, chromedp.Navigate(url+"/#node="+n0.PrimaryMAC)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, lctx, "the panel of the node the address names", `document.querySelector('#detail').dataset.loaded === "`+n0.PrimaryMAC+`"`)

	// Without JavaScript: the plain table, every machine, the reason.
	nctx, cancel := chromedp.NewContext(ctx)
	defer cancel()
	if _, err := chromedp.Call(nctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(nctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(nctx, chromedp.WaitVisible(chromedp.CSS("#plain"))); err != nil {
		t.Fatal(err)
	}
	rows := eval[int](t, nctx, `document.querySelectorAll('#plain tbody tr').length`)
	rackShown := eval[string](t, nctx, `getComputedStyle(document.querySelector('#rack')).display`)
	table := eval[string](t, nctx, `document.querySelector('#plain').textContent`)
	if rows != len(want) || rackShown != "none" || !strings.Contains(table, reason) {
		t.Errorf("without JavaScript: %d rows (want %d), rack display %q, reason shown %v", rows, len(want), rackShown, strings.Contains(table, reason))
	}
	screenshot(t, nctx, "no-javascript")
}

// TestBrowserFirstPaint measures a first visit to the view of a
// 100-server rack on loopback: the first contentful paint as Chromium
// reports it, the time until the first live update is applied, and the
// bytes the server sent for it all (page, styles, script, the stream's
// first snapshot and events). It prints the figures; speed is no
// assertion here (make bench territory), what it asserts is that the
// whole rack is there.
func TestBrowserFirstPaint(t *testing.T) {
	tr := newTestRack(t, 101)
	tr.busyRack(time.Now())
	for i := 0; i < 200; i++ {
		n := tr.server(i % 100)
		tr.journal.add(n.PrimaryMAC, api.KindDHCP, fmt.Sprintf("lease %s, client arch 0", n.IP))
	}
	url, counter := serve(t, tr)
	// The browser's own cost, to read the figures against: a one-line page
	// from another server, first in each new browser (which also starts its
	// renderer and reads its fonts, as a browser already open has done).
	blank := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<!DOCTYPE html><html lang=en><title>blank</title><p>blank page</p></html>")
	}))
	defer blank.Close()
	const runs = 5
	var paints, blanks []float64
	for run := 0; run < runs; run++ {
		// A new browser each time: nothing of the view cached. It is closed
		// at the end of its run, so its live stream is not counted as the
		// next browser's bytes.
		ctx, closeIt := newBrowser(t)
		defer closeIt()
		if err := chromedp.Do(ctx, chromedp.Navigate(blank.URL)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "the blank page's paint", `performance.getEntriesByName('first-contentful-paint').length > 0`)
		base := eval[float64](t, ctx, `performance.getEntriesByName('first-contentful-paint')[0].startTime`)
		counter.sent.Store(0)
		if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "the first live update", `Number(document.documentElement.dataset.updates) >= 1`)
		units := eval[int](t, ctx, `document.querySelectorAll('#rack .unit').length`)
		if units != 101 {
			t.Fatalf("%d units, want 101", units)
		}
		sent := counter.sent.Load()
		waitFor(t, ctx, "the view's paint", `performance.getEntriesByName('first-contentful-paint').length > 0`)
		fcp := eval[float64](t, ctx, `performance.getEntriesByName('first-contentful-paint')[0].startTime`)
		ready := eval[float64](t, ctx, `Number(document.documentElement.dataset.firstUpdateMs)`)
		parts := eval[string](t, ctx, `(() => { const n = performance.getEntriesByType('navigation')[0];
			return 'response ' + n.responseEnd.toFixed(0) + ' ms, DOM interactive ' + n.domInteractive.toFixed(0) + ' ms, DOMContentLoaded ' + n.domContentLoadedEventEnd.toFixed(0) + ' ms; ' +
			[n, ...performance.getEntriesByType('resource')].map(e => e.name.replace(location.origin, '') + ' ' + e.transferSize + ' B').join(', ') })()`)
		t.Logf("run %d: first contentful paint %.1f ms (a blank page's: %.1f ms); first live update applied by %.1f ms; %d bytes sent by the server (%.1f KiB); navigation: %s",
			run+1, fcp, base, ready, sent, float64(sent)/1024, parts)
		if sent > 1<<20 {
			t.Errorf("%d bytes for a first view, over 1 MiB", sent)
		}
		paints, blanks = append(paints, fcp), append(blanks, base)
		closeIt()
	}
	sort.Float64s(paints)
	sort.Float64s(blanks)
	t.Logf("first contentful paint of the view, 101 machines on loopback, %d new browsers: min %.1f ms, median %.1f ms (a blank page's: min %.1f ms, median %.1f ms)",
		runs, paints[0], paints[runs/2], blanks[0], blanks[runs/2])
}
