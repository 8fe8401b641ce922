package release

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Registry is where releases live: HOST[:PORT]/REPO, tags are versions.
type Registry struct {
	repo name.Repository
	opts []remote.Option
}

// OpenRegistry parses HOST[:PORT]/REPO. A loopback host is spoken to over
// plain HTTP (tests, a registry on the management node itself); any other
// host only over HTTPS — the transport refuses plain HTTP, because
// go-containerregistry would otherwise fall back to it for private addresses.
func OpenRegistry(ref string) (*Registry, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return nil, fmt.Errorf("no registry: pass --registry HOST[:PORT]/REPO (the installed release names none)")
	}
	if strings.Contains(ref, "://") || strings.ContainsAny(ref, "@") || strings.Count(ref, ":") > 1 && !strings.HasPrefix(ref, "[") {
		return nil, fmt.Errorf("registry %q: want HOST[:PORT]/REPO, no scheme, tag or digest", ref)
	}
	host, _, ok := strings.Cut(ref, "/")
	if !ok {
		return nil, fmt.Errorf("registry %q: want HOST[:PORT]/REPO", ref)
	}
	var nopts []name.Option
	loop := isLoopback(host)
	if loop {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(ref, append(nopts, name.StrictValidation)...)
	if err != nil {
		return nil, fmt.Errorf("registry %q: %w", ref, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if !loop {
		tr.Proxy = http.ProxyFromEnvironment
	}
	return &Registry{repo: repo, opts: []remote.Option{
		remote.WithTransport(httpsOnly{next: tr, allowHTTP: loop}),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
	}}, nil
}

// String is the registry as the user writes it.
func (r *Registry) String() string { return r.repo.String() }

func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// httpsOnly refuses plain HTTP except to loopback registries.
type httpsOnly struct {
	next      http.RoundTripper
	allowHTTP bool
}

func (h httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !h.allowHTTP {
		return nil, fmt.Errorf("refusing plain HTTP to %s: registries off loopback are spoken to over HTTPS only", req.URL.Host)
	}
	return h.next.RoundTrip(req)
}

// Versions lists the registry's release tags, oldest first.
func (r *Registry) Versions(ctx context.Context) ([]string, error) {
	tags, err := remote.List(r.repo, append(r.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, fmt.Errorf("listing the releases in %s: %w", r.repo, err)
	}
	var out []string
	for _, v := range SortedVersions(tags) {
		out = append(out, v.Original())
	}
	return out, nil
}

// Image resolves a version's tag to a digest and fetches the image by that
// digest, so the manifest is checked against it; layers are checked when
// read. It returns the digest the tag pointed at.
func (r *Registry) Image(ctx context.Context, version string) (v1.Image, v1.Hash, error) {
	tag := r.repo.Tag(version)
	opts := append(r.opts, remote.WithContext(ctx))
	desc, err := remote.Head(tag, opts...)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("looking up release %s in %s: %w", version, r.repo, err)
	}
	img, err := remote.Image(r.repo.Digest(desc.Digest.String()), opts...)
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("fetching release %s (%s) from %s: %w", version, desc.Digest, r.repo, err)
	}
	return img, desc.Digest, nil
}

// Push uploads img tagged with version.
func (r *Registry) Push(ctx context.Context, img v1.Image, version string) error {
	if _, err := ParseVersion(version); err != nil {
		return err
	}
	if err := remote.Write(r.repo.Tag(version), img, append(r.opts, remote.WithContext(ctx))...); err != nil {
		return fmt.Errorf("pushing release %s to %s: %w", version, r.repo, err)
	}
	return nil
}

// PushSignature uploads the cosign signature image of digest, at its
// cosign tag (SignatureTag).
func (r *Registry) PushSignature(ctx context.Context, sig v1.Image, digest v1.Hash) error {
	if err := remote.Write(r.repo.Tag(SignatureTag(digest)), sig, append(r.opts, remote.WithContext(ctx))...); err != nil {
		return fmt.Errorf("pushing the signature of %s to %s: %w", digest, r.repo, err)
	}
	return nil
}

// Signature fetches the cosign signature image of digest; nil when the
// registry has none (an unsigned release).
func (r *Registry) Signature(ctx context.Context, digest v1.Hash) (v1.Image, error) {
	opts := append(r.opts, remote.WithContext(ctx))
	img, err := remote.Image(r.repo.Tag(SignatureTag(digest)), opts...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("fetching the signature of %s from %s: %w", digest, r.repo, err)
	}
	return img, nil
}
