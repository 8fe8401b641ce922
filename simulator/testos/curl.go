package testos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// curl's exit codes for the cases the contract's scripts can meet.
const (
	curlOK          = 0
	curlUsage       = 2
	curlConnect     = 7
	curlHTTPError   = 22
	curlWriteError  = 23
	curlTimeout     = 28
	curlReadFileErr = 26
)

type curlArgs struct {
	method, url, output string
	headers             []string
	data                []byte
	hasData             bool
	fail, silent, shows bool
	retries             int
	retryDelay          time.Duration
	maxTime             time.Duration
	connectTimeout      time.Duration
}

// Curl implements the subset of curl that Racker's install and boot scripts
// use (docs/boot-contract.md): -f -s -S -X -H -d/--data/--data-binary/
// --data-raw (with @FILE), -o, -L, --retry, --retry-delay, -m, --connect-timeout.
// Like curl, it exits 22 on an HTTP error only with -f.
func Curl(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a, err := parseCurlArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "curl: %v\n", err)
		return curlUsage
	}
	code := curlOK
	for attempt := 0; attempt <= a.retries; attempt++ {
		if attempt > 0 {
			time.Sleep(a.retryDelay)
		}
		var retryable bool
		code, retryable, err = curlOnce(ctx, a, stdout)
		if err != nil && (!a.silent || a.shows) {
			fmt.Fprintf(stderr, "curl: (%d) %v\n", code, err)
		}
		if code == curlOK || !retryable {
			break
		}
	}
	return code
}

func parseCurlArgs(args []string) (*curlArgs, error) {
	a := &curlArgs{retryDelay: time.Second}
	// Expand combined short flags such as -fsSL.
	var expanded []string
	for _, arg := range args {
		if len(arg) > 2 && arg[0] == '-' && arg[1] != '-' && strings.Trim(arg[1:], "fsSLk") == "" {
			for _, c := range arg[1:] {
				expanded = append(expanded, "-"+string(c))
			}
			continue
		}
		expanded = append(expanded, arg)
	}
	for i := 0; i < len(expanded); i++ {
		arg := expanded[i]
		value := func() (string, error) {
			if i+1 >= len(expanded) {
				return "", fmt.Errorf("option %s needs a value", arg)
			}
			i++
			return expanded[i], nil
		}
		var err error
		var v string
		switch arg {
		case "-f", "--fail":
			a.fail = true
		case "-s", "--silent":
			a.silent = true
		case "-S", "--show-error":
			a.shows = true
		case "-L", "--location", "-k", "--insecure":
			// Go follows redirects anyway; the test OS only talks plain HTTP.
		case "-X", "--request":
			a.method, err = value()
		case "-H", "--header":
			v, err = value()
			a.headers = append(a.headers, v)
		case "-o", "--output":
			a.output, err = value()
		case "-d", "--data", "--data-ascii", "--data-binary", "--data-raw":
			if v, err = value(); err == nil {
				err = a.addData(arg, v)
			}
		case "--retry":
			if v, err = value(); err == nil {
				a.retries, err = strconv.Atoi(v)
			}
		case "--retry-delay":
			if v, err = value(); err == nil {
				a.retryDelay, err = seconds(v)
			}
		case "-m", "--max-time":
			if v, err = value(); err == nil {
				a.maxTime, err = seconds(v)
			}
		case "--connect-timeout":
			if v, err = value(); err == nil {
				a.connectTimeout, err = seconds(v)
			}
		default:
			if strings.HasPrefix(arg, "-") {
				return nil, fmt.Errorf("option %s is not supported by the test OS's curl", arg)
			}
			if a.url != "" {
				return nil, fmt.Errorf("more than one URL (%s, %s)", a.url, arg)
			}
			a.url = arg
		}
		if err != nil {
			return nil, fmt.Errorf("option %s: %w", arg, err)
		}
	}
	if a.url == "" {
		return nil, errors.New("no URL given")
	}
	if a.method == "" {
		a.method = http.MethodGet
		if a.hasData {
			a.method = http.MethodPost
		}
	}
	return a, nil
}

func seconds(v string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	return time.Duration(f * float64(time.Second)), err
}

// addData appends one data argument; "@FILE" reads a file, and --data (not
// --data-binary) drops newlines from it, as curl does. Several data options
// are joined with "&".
func (a *curlArgs) addData(opt, v string) error {
	var b []byte
	if strings.HasPrefix(v, "@") && opt != "--data-raw" {
		var err error
		if b, err = os.ReadFile(v[1:]); err != nil {
			return fmt.Errorf("while reading %s: %w", v[1:], err)
		}
		if opt != "--data-binary" {
			b = []byte(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
		}
	} else {
		b = []byte(v)
	}
	if a.hasData {
		a.data = append(a.data, '&')
	}
	a.data = append(a.data, b...)
	a.hasData = true
	return nil
}

func curlOnce(ctx context.Context, a *curlArgs, stdout io.Writer) (code int, retryable bool, err error) {
	if a.maxTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.maxTime)
		defer cancel()
	}
	var body io.Reader
	if a.hasData {
		body = strings.NewReader(string(a.data))
	}
	req, err := http.NewRequestWithContext(ctx, a.method, a.url, body)
	if err != nil {
		return curlUsage, false, fmt.Errorf("bad URL %s: %w", a.url, err)
	}
	if a.hasData {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("User-Agent", "curl/testos")
	for _, h := range a.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			continue
		}
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	dialer := &net.Dialer{Timeout: a.connectTimeout}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return curlTimeout, true, fmt.Errorf("%s %s: timed out", a.method, a.url)
		}
		return curlConnect, true, fmt.Errorf("%s %s: %w", a.method, a.url, err)
	}
	defer resp.Body.Close()
	if a.fail && resp.StatusCode >= 400 {
		return curlHTTPError, resp.StatusCode >= 500, fmt.Errorf("the requested URL returned error: %d", resp.StatusCode)
	}
	out := stdout
	if a.output != "" && a.output != "-" {
		f, err := os.Create(a.output)
		if err != nil {
			return curlWriteError, false, fmt.Errorf("while creating %s: %w", a.output, err)
		}
		defer f.Close()
		out = f
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		return curlWriteError, true, fmt.Errorf("while reading the answer of %s: %w", a.url, err)
	}
	return curlOK, false, nil
}
