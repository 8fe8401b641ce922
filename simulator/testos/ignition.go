package testos

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Config is the subset of an Ignition v3 config that Racker's configs use
// (docs/boot-contract.md §3–4). Unknown fields are ignored on purpose: the
// test OS must accept every valid 3.x config Racker writes, and it says on the
// console which parts it applies.
type Config struct {
	Ignition struct {
		Version string `json:"version"`
		Config  struct {
			Replace Resource   `json:"replace"`
			Merge   []Resource `json:"merge"`
		} `json:"config"`
	} `json:"ignition"`
	Storage struct {
		Directories []Directory `json:"directories"`
		Files       []File      `json:"files"`
	} `json:"storage"`
	Passwd struct {
		Users []User `json:"users"`
	} `json:"passwd"`
	Systemd struct {
		Units []Unit `json:"units"`
	} `json:"systemd"`
}

// Resource is Ignition's pointer to content: a data: or http(s): URL,
// optionally gzip-compressed, fetched with the HTTP headers it lists
// (spec 3.1+; Racker's boot stub presents the node's token this way).
type Resource struct {
	Source      *string      `json:"source"`
	Compression *string      `json:"compression"`
	HTTPHeaders []HTTPHeader `json:"httpHeaders"`
}

// HTTPHeader is one entry of a Resource's httpHeaders.
type HTTPHeader struct {
	Name  string  `json:"name"`
	Value *string `json:"value"`
}

// Directory is a storage.directories entry.
type Directory struct {
	Path string `json:"path"`
	Mode *int   `json:"mode"`
}

// File is a storage.files entry.
type File struct {
	Path     string     `json:"path"`
	Mode     *int       `json:"mode"`
	Contents Resource   `json:"contents"`
	Append   []Resource `json:"append"`
}

// User is a passwd.users entry; only the SSH keys matter to the test OS.
type User struct {
	Name              string   `json:"name"`
	SSHAuthorizedKeys []string `json:"sshAuthorizedKeys"`
}

// Unit is a systemd.units entry.
type Unit struct {
	Name     string   `json:"name"`
	Enabled  *bool    `json:"enabled"`
	Mask     *bool    `json:"mask"`
	Contents *string  `json:"contents"`
	Dropins  []Dropin `json:"dropins"`
}

// Dropin is a unit drop-in (appended to the unit when it is parsed).
type Dropin struct {
	Name     string  `json:"name"`
	Contents *string `json:"contents"`
}

// maxConfigChain bounds replace/merge chains so a config pointing at itself
// cannot loop forever.
const maxConfigChain = 5

// ParseConfig decodes an Ignition config of spec 3, or of spec 2.x
// translated to spec 3 as Flatcar's Ignition does (ignition_v2.go), and
// refuses every other version.
func ParseConfig(data []byte) (*Config, error) {
	data = bytes.TrimSpace(data)
	var head struct {
		Ignition struct {
			Version string `json:"version"`
		} `json:"ignition"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("while decoding the Ignition config: %w", err)
	}
	switch v := head.Ignition.Version; {
	case strings.HasPrefix(v, "2."):
		return translateV2(data)
	case !strings.HasPrefix(v, "3."):
		return nil, fmt.Errorf("Ignition config version %q is neither 3.x nor 2.x", v)
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("while decoding the Ignition config: %w", err)
	}
	return &c, nil
}

// Fetcher fetches the content a Resource source names.
type Fetcher interface {
	Fetch(ctx context.Context, source string) ([]byte, error)
}

// HTTPFetcher fetches data: URLs locally and http(s): URLs with a client.
type HTTPFetcher struct {
	Client *http.Client
}

// HeaderFetcher is a Fetcher that can send a Resource's httpHeaders.
type HeaderFetcher interface {
	FetchWithHeaders(ctx context.Context, source string, headers []HTTPHeader) ([]byte, error)
}

// Fetch returns the body of source; HTTP answers other than 200 are errors,
// as in Ignition.
func (f HTTPFetcher) Fetch(ctx context.Context, source string) ([]byte, error) {
	return f.FetchWithHeaders(ctx, source, nil)
}

// FetchWithHeaders is Fetch with the resource's HTTP headers.
func (f HTTPFetcher) FetchWithHeaders(ctx context.Context, source string, headers []HTTPHeader) ([]byte, error) {
	if strings.HasPrefix(source, "data:") {
		return DecodeDataURL(source)
	}
	if !strings.HasPrefix(source, "http://") && !strings.HasPrefix(source, "https://") {
		return nil, fmt.Errorf("unsupported source %q (the test OS fetches data: and http(s): only)", source)
	}
	client := f.Client
	if client == nil {
		client = &http.Client{Timeout: 60 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, source, nil)
	if err != nil {
		return nil, fmt.Errorf("while building the request for %s: %w", source, err)
	}
	req.Header.Set("Accept", "application/vnd.coreos.ignition+json;version=3.4.0, */*;q=0.1")
	for _, h := range headers {
		if h.Value != nil {
			req.Header.Set(h.Name, *h.Value)
		}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("while fetching %s: %w", source, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("while reading %s: %w", source, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: HTTP %d: %s", source, resp.StatusCode, strings.TrimSpace(string(firstBytes(body, 200))))
	}
	return body, nil
}

func firstBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// fetchResource fetches r and undoes its compression.
func fetchResource(ctx context.Context, f Fetcher, r Resource) ([]byte, error) {
	if r.Source == nil {
		return nil, nil
	}
	var data []byte
	var err error
	if hf, ok := f.(HeaderFetcher); ok && len(r.HTTPHeaders) > 0 {
		data, err = hf.FetchWithHeaders(ctx, *r.Source, r.HTTPHeaders)
	} else if len(r.HTTPHeaders) > 0 {
		return nil, fmt.Errorf("fetching %s: this fetcher cannot send the resource's HTTP headers", *r.Source)
	} else {
		data, err = f.Fetch(ctx, *r.Source)
	}
	if err != nil {
		return nil, err
	}
	if r.Compression == nil || *r.Compression == "" {
		return data, nil
	}
	if *r.Compression != "gzip" {
		return nil, fmt.Errorf("unsupported compression %q", *r.Compression)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("while opening gzip content: %w", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("while decompressing gzip content: %w", err)
	}
	return out, nil
}

// Resolve follows ignition.config.replace (the stored boot.ign is a stub
// whose replace source is Racker's boot-phase config) and merges
// ignition.config.merge configs the way Ignition does: the merged config
// first, the parent's own entries on top (later files with the same path win).
func Resolve(ctx context.Context, f Fetcher, c *Config, say func(string)) (*Config, error) {
	for depth := 0; ; depth++ {
		if depth >= maxConfigChain {
			return nil, fmt.Errorf("more than %d chained Ignition configs", maxConfigChain)
		}
		if c.Ignition.Config.Replace.Source != nil {
			src := *c.Ignition.Config.Replace.Source
			say("following config.replace to " + src)
			data, err := fetchResource(ctx, f, c.Ignition.Config.Replace)
			if err != nil {
				return nil, fmt.Errorf("while fetching the replacing config: %w", err)
			}
			if c, err = ParseConfig(data); err != nil {
				return nil, fmt.Errorf("config from %s: %w", src, err)
			}
			continue
		}
		break
	}
	merged := &Config{}
	merged.Ignition.Version = c.Ignition.Version
	for _, m := range c.Ignition.Config.Merge {
		if m.Source == nil {
			continue
		}
		say("merging config " + *m.Source)
		data, err := fetchResource(ctx, f, m)
		if err != nil {
			return nil, fmt.Errorf("while fetching a merged config: %w", err)
		}
		child, err := ParseConfig(data)
		if err != nil {
			return nil, fmt.Errorf("config from %s: %w", *m.Source, err)
		}
		if child, err = Resolve(ctx, f, child, say); err != nil {
			return nil, err
		}
		appendConfig(merged, child)
	}
	own := *c
	own.Ignition.Config.Merge = nil
	appendConfig(merged, &own)
	return merged, nil
}

func appendConfig(dst, src *Config) {
	dst.Storage.Directories = append(dst.Storage.Directories, src.Storage.Directories...)
	dst.Storage.Files = append(dst.Storage.Files, src.Storage.Files...)
	dst.Passwd.Users = append(dst.Passwd.Users, src.Passwd.Users...)
	dst.Systemd.Units = append(dst.Systemd.Units, src.Systemd.Units...)
}
