package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to the boot services' HTTP API from another process.
type Client struct {
	base string
	// HTTP is the client used for every request; its Timeout must exceed
	// the longest long-poll wait (or be 0 and rely on contexts).
	HTTP *http.Client
}

// NewClient returns a client for baseURL, e.g. "http://172.24.213.1:8080".
func NewClient(baseURL string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), HTTP: &http.Client{}}
}

// Nodes returns every planned node's state.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var out NodesResponse
	if err := c.do(ctx, http.MethodGet, "/api/v1/nodes", nil, &out); err != nil {
		return nil, err
	}
	return out.Nodes, nil
}

// Release returns the OS release the boot services serve.
func (c *Client) Release(ctx context.Context) (Release, error) {
	var out Release
	err := c.do(ctx, http.MethodGet, "/api/v1/release", nil, &out)
	return out, err
}

// Node returns one planned node's state, by its primary MAC: its BMC's
// current lease (else its planned address), its target and phase.
func (c *Client) Node(ctx context.Context, mac string) (Node, error) {
	var out Node
	err := c.do(ctx, http.MethodGet, "/api/v1/nodes/"+url.PathEscape(mac), nil, &out)
	return out, err
}

// Events returns the events after seq in the journal as it is now,
// waiting up to wait for one to arrive (long poll). An empty answer after
// wait is not an error. A reader that keeps a cursor across restarts uses
// EventsIn.
func (c *Client) Events(ctx context.Context, after uint64, wait time.Duration) ([]Event, error) {
	return c.EventsIn(ctx, "", after, wait)
}

// EventsIn is Events for a cursor (epoch, after): when the journal is no
// longer the one epoch names (its file was deleted and sequence numbers
// started again), the answer starts at the new journal's first event, and
// each event carries the new Epoch. "" means the current journal.
func (c *Client) EventsIn(ctx context.Context, epoch string, after uint64, wait time.Duration) ([]Event, error) {
	q := url.Values{"after": {strconv.FormatUint(after, 10)}}
	if epoch != "" {
		q.Set("epoch", epoch)
	}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var out EventsResponse
	if err := c.do(ctx, http.MethodGet, "/api/v1/events?"+q.Encode(), nil, &out); err != nil {
		return nil, err
	}
	return out.Events, nil
}

// Reinstall sets the node's target to install (wiping every disk when
// wipeAll) and returns its new state.
func (c *Client) Reinstall(ctx context.Context, mac string, wipeAll bool) (Node, error) {
	var out Node
	err := c.do(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(mac)+"/reinstall", ReinstallRequest{WipeAll: wipeAll}, &out)
	return out, err
}

// ReloadPlan makes the boot services re-read nodes.csv and the plan's
// state, as a SIGHUP does (racker bootstrap, replace and retire changed
// them). Boot services that cannot re-plan themselves (tests, an older
// racker serve) answer 404: then a restart or SIGHUP is the way.
func (c *Client) ReloadPlan(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/api/v1/plan/reload", nil, nil)
}

// Netboot opens the node's boot window: Racker is about to netboot it
// (PXE flags set, power cycled). Its install config is served only in a
// window (docs/security.md).
func (c *Client) Netboot(ctx context.Context, mac string) (Node, error) {
	var out Node
	err := c.do(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(mac)+"/netboot", nil, &out)
	return out, err
}

// PostEvent sends a node callback, as a node's OS does with curl, with the
// node's token. The server only accepts it from the node's own address.
func (c *Client) PostEvent(ctx context.Context, cb Callback, token string) error {
	return c.doWith(ctx, http.MethodPost, "/api/v1/events", cb, nil, token)
}

// Healthz returns nil when the boot services answer.
func (c *Client) Healthz(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Method, URL string
	Code        int
	Message     string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.URL, e.Code, http.StatusText(e.Code), e.Message)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.doWith(ctx, method, path, in, out, "")
}

func (c *Client) doWith(ctx context.Context, method, path string, in, out any, token string) error {
	u := c.base + path
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding request for %s %s: %w", method, u, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("building request %s %s: %w", method, u, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set(TokenHeader, TokenScheme+token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("calling the boot services: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var er ErrorResponse
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &er) == nil && er.Error != "" {
			msg = er.Error
		}
		return &StatusError{Method: method, URL: u, Code: resp.StatusCode, Message: msg}
	}
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding the answer of %s %s: %w", method, u, err)
	}
	return nil
}
