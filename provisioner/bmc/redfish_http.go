package bmc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/stmcginnis/gofish/common"
	"github.com/stmcginnis/gofish/redfish"
)

// The Redfish driver uses gofish's resource types and actions (ComputerSystem,
// Manager, Reset, SetBoot, CreateSession) over its own common.Client, rfConn,
// rather than gofish's APIClient, because APIClient binds one context for
// its whole life and has no hook for what a provisioner needs on every
// request: this operation's deadline, the login made lazily and made again
// when a session expires, errors that carry the resource and HTTP status,
// bounded response bodies, and no redirects (a token must never follow a
// redirect to another host).

// RedfishError is a Redfish service's answer that is not a success.
type RedfishError struct {
	Method   string
	Resource string // the path, e.g. /redfish/v1/Systems/1
	Status   int    // HTTP status
	Message  string // the service's own words (error.message, @Message.ExtendedInfo)
}

func (e *RedfishError) Error() string {
	s := fmt.Sprintf("%s %s: HTTP %d %s", e.Method, e.Resource, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// transient says whether asking again later may succeed: the BMC is busy
// or its web server is restarting. Other statuses are its final answer.
func (e *RedfishError) transient() bool {
	return e.Status == http.StatusTooManyRequests || (e.Status >= 500 && e.Status != http.StatusNotImplemented)
}

// Bounds on what a BMC may send: a ComputerSystem is a few KiB, an error
// less; anything far larger is a broken or hostile answer.
const (
	maxRedfishBody = 4 << 20
	maxErrorBody   = 64 << 10
)

// rfConn is one operation's view of the BMC: gofish calls it for every
// request. auth=false is for the service root and the login itself.
type rfConn struct {
	ctx  context.Context
	c    *redfishController
	auth bool
}

var _ common.Client = rfConn{}

func (r rfConn) Get(u string) (*http.Response, error) { return r.send(http.MethodGet, u, nil, nil) }
func (r rfConn) GetWithHeaders(u string, h map[string]string) (*http.Response, error) {
	return r.send(http.MethodGet, u, nil, h)
}
func (r rfConn) Post(u string, p any) (*http.Response, error) {
	return r.send(http.MethodPost, u, p, nil)
}
func (r rfConn) PostWithHeaders(u string, p any, h map[string]string) (*http.Response, error) {
	return r.send(http.MethodPost, u, p, h)
}
func (r rfConn) PostMultipart(u string, _ map[string]io.Reader) (*http.Response, error) {
	return nil, fmt.Errorf("POST %s: multipart uploads are not used by Racker", u)
}
func (r rfConn) PostMultipartWithHeaders(u string, p map[string]io.Reader, _ map[string]string) (*http.Response, error) {
	return r.PostMultipart(u, p)
}
func (r rfConn) Patch(u string, p any) (*http.Response, error) {
	return r.send(http.MethodPatch, u, p, nil)
}
func (r rfConn) PatchWithHeaders(u string, p any, h map[string]string) (*http.Response, error) {
	return r.send(http.MethodPatch, u, p, h)
}
func (r rfConn) Put(u string, p any) (*http.Response, error) {
	return r.send(http.MethodPut, u, p, nil)
}
func (r rfConn) PutWithHeaders(u string, p any, h map[string]string) (*http.Response, error) {
	return r.send(http.MethodPut, u, p, h)
}
func (r rfConn) Delete(u string) (*http.Response, error) {
	return r.DeleteWithHeaders(u, nil)
}
func (r rfConn) DeleteWithHeaders(u string, h map[string]string) (*http.Response, error) {
	resp, err := r.send(http.MethodDelete, u, nil, h)
	if err == nil {
		resp.Body.Close() // gofish does the same: nobody reads it
	}
	return resp, err
}

// send makes one request; with auth it logs in first when needed and, once,
// again when the BMC says the session is gone (an idle session expires).
func (r rfConn) send(method, path string, payload any, hdr map[string]string) (*http.Response, error) {
	if path == "" {
		return nil, fmt.Errorf("%s: the BMC gave no URI for this resource", method)
	}
	var body []byte
	if payload != nil {
		var err error
		if body, err = json.Marshal(payload); err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	target, resource, err := r.c.resolve(path)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for attempt := 0; ; attempt++ {
		var a authState
		if r.auth {
			if a, err = r.c.ensureAuth(r.ctx); err != nil {
				return nil, err
			}
		}
		resp, err := r.c.roundTrip(r.ctx, method, target, resource, body, hdr, a)
		var re *RedfishError
		if errors.As(err, &re) && re.Status == http.StatusUnauthorized && r.auth {
			if a.token != "" && attempt == 0 {
				r.c.opts.Logger.Debug("Redfish session no longer valid; logging in again", "node", r.c.opts.Node, "bmc", r.c.addr, "resource", resource)
				r.c.dropSession(a.token)
				continue
			}
			return nil, fmt.Errorf("%w: %w", err, ErrAuth)
		}
		return resp, err
	}
}

// resolve turns a path (or a URL the BMC gave) into the URL to request and
// the resource to name in errors. URLs on other hosts are refused: the
// credentials go to this BMC only.
func (c *redfishController) resolve(path string) (target, resource string, err error) {
	if strings.HasPrefix(path, "/") {
		return c.base + path, path, nil
	}
	u, err := url.Parse(path)
	if err != nil || u.Host == "" {
		return "", "", fmt.Errorf("not a Redfish resource path")
	}
	if !strings.EqualFold(u.Host, c.hostPort) || u.Scheme != "https" {
		return "", "", fmt.Errorf("the BMC points to %s, another host; not following it", u.Redacted())
	}
	return c.base + u.RequestURI(), u.RequestURI(), nil
}

// roundTrip is one HTTP exchange. Non-success answers become RedfishError;
// success bodies are bounded.
func (c *redfishController) roundTrip(ctx context.Context, method, target, resource string, body []byte, hdr map[string]string, a authState) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, resource, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-Version", "4.0")
	req.Header.Set("User-Agent", "racker")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		if k != "" {
			req.Header.Set(k, v)
		}
	}
	switch {
	case a.token != "":
		req.Header.Set("X-Auth-Token", a.token)
	case a.basic:
		req.SetBasicAuth(c.opts.Credentials.User, c.opts.Credentials.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error repeats the URL; the caller names the resource.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s %s: %w", method, resource, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		resp.Body = &boundedBody{rc: resp.Body, left: maxRedfishBody, what: resource}
		return resp, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return nil, &RedfishError{Method: method, Resource: resource, Status: resp.StatusCode, Message: redfishMessage(raw)}
}

// redfishMessage extracts the service's words from an error body (DSP0266
// §9.6): the messages of @Message.ExtendedInfo, else error.message, else
// a short piece of the body itself.
func redfishMessage(raw []byte) string {
	var e struct {
		Error *struct {
			Code     string `json:"code"`
			Message  string `json:"message"`
			Extended []struct {
				MessageID string `json:"MessageId"`
				Message   string
			} `json:"@Message.ExtendedInfo"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error != nil {
		var parts []string
		for _, x := range e.Error.Extended {
			if x.Message != "" {
				parts = append(parts, x.Message)
			}
		}
		if len(parts) == 0 && e.Error.Message != "" {
			parts = append(parts, e.Error.Message)
		}
		if len(parts) > 0 {
			return strings.Join(parts, "; ")
		}
	}
	s := strings.TrimSpace(string(raw))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// boundedBody fails a read past its limit instead of buffering a BMC's
// endless answer.
type boundedBody struct {
	rc   io.ReadCloser
	left int64
	what string
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%s: the BMC's answer is larger than %d bytes", b.what, maxRedfishBody)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left+1] // one byte more shows the answer goes on
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, fmt.Errorf("%s: the BMC's answer is larger than %d bytes", b.what, maxRedfishBody)
	}
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// authState is how requests authenticate: a session token, or Basic.
type authState struct {
	token   string
	session string // the session's URI, for logging out
	basic   bool
}

func (a authState) ready() bool { return a.token != "" || a.basic }

// ensureAuth logs in once: a Redfish session when the service offers one
// (DSP0266 §13.3), Basic authentication when it has no session service.
// A refused password is never retried with the other scheme, since BMCs
// lock accounts after a few failures.
func (c *redfishController) ensureAuth(ctx context.Context) (authState, error) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if c.auth.ready() {
		return c.auth, nil
	}
	root, err := c.serviceRoot(ctx)
	if err != nil {
		return authState{}, err
	}
	if root.sessions == "" {
		c.opts.Logger.Debug("Redfish service has no session service; using Basic authentication", "node", c.opts.Node, "bmc", c.addr)
		c.auth = authState{basic: true}
		return c.auth, nil
	}
	tok, err := redfish.CreateSession(rfConn{ctx: ctx, c: c}, root.sessions, c.opts.Credentials.User, c.opts.Credentials.Password)
	var re *RedfishError
	switch {
	case errors.As(err, &re) && (re.Status == http.StatusUnauthorized || re.Status == http.StatusForbidden):
		return authState{}, fmt.Errorf("%w: %w", err, ErrAuth)
	case errors.As(err, &re) && (re.Status == http.StatusNotFound || re.Status == http.StatusMethodNotAllowed || re.Status == http.StatusNotImplemented):
		c.opts.Logger.Debug("Redfish service refuses sessions; using Basic authentication", "node", c.opts.Node, "bmc", c.addr, "err", err)
		c.auth = authState{basic: true}
		return c.auth, nil
	case err != nil:
		return authState{}, fmt.Errorf("while logging in: %w", err)
	case tok.Token == "":
		c.opts.Logger.Debug("Redfish login returned no X-Auth-Token; using Basic authentication", "node", c.opts.Node, "bmc", c.addr)
		c.auth = authState{basic: true}
		return c.auth, nil
	}
	c.auth = authState{token: tok.Token, session: tok.Session}
	c.opts.Logger.Debug("Redfish session opened", "node", c.opts.Node, "bmc", c.addr, "session", tok.Session)
	return c.auth, nil
}

// dropSession forgets a token the BMC no longer accepts, unless another
// request has already replaced it.
func (c *redfishController) dropSession(token string) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if c.auth.token == token {
		c.auth = authState{}
	}
}

// rootLinks is what the driver needs from the service root.
type rootLinks struct {
	version  string
	systems  string
	managers string
	sessions string
}

// serviceRoot reads the service root once (it needs no authentication).
func (c *redfishController) serviceRoot(ctx context.Context) (rootLinks, error) {
	c.rootMu.Lock()
	defer c.rootMu.Unlock()
	if c.root != nil {
		return *c.root, nil
	}
	resp, err := rfConn{ctx: ctx, c: c}.Get(redfishRoot)
	if err != nil {
		return rootLinks{}, err
	}
	defer resp.Body.Close()
	var r struct {
		RedfishVersion string
		Systems        common.Link
		Managers       common.Link
		SessionService common.Link
		Links          struct{ Sessions common.Link }
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return rootLinks{}, fmt.Errorf("GET %s: not a Redfish service root: %w", redfishRoot, err)
	}
	l := rootLinks{version: r.RedfishVersion, systems: string(r.Systems), managers: string(r.Managers), sessions: string(r.Links.Sessions)}
	if l.sessions == "" && r.SessionService != "" {
		// DSP0266 puts the link in Links.Sessions; older services only
		// have the session service, whose collection is Sessions.
		l.sessions = strings.TrimSuffix(string(r.SessionService), "/") + "/Sessions"
	}
	c.root = &l
	return l, nil
}

// redfishRoot is the service root every Redfish service has (DSP0266 §9.4).
const redfishRoot = "/redfish/v1/"
