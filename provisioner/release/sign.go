package release

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/racker/racker/provisioner/internal/atomicfile"
)

// Signed releases. TLS to the registry says nothing about who built an
// image, so every release image is signed, in cosign's format (the OCI
// ecosystem's most used, sigstore's "simple signing"): the signature is an
// OCI image of its own, tagged sha256-<hex of the image digest>.sig next
// to the release, whose one layer is the simple-signing payload (the
// signed image's manifest digest) and whose annotation
// dev.cosignproject.cosign/signature holds the base64 ECDSA P-256
// signature of that payload. `cosign verify --key release-key.pub` checks
// it as well as Racker does.
//
// The public key ships in every release (KeyFile in its payload): an
// installed release pins the key its successors must be signed with. A
// first install trusts the key shipped in the image (said aloud) or the
// one given with --trust-key.

// KeyFile is the release's public signing key, in its payload.
const KeyFile = "release-key.pub"

const (
	simpleSigningMediaType types.MediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	signatureAnnotation                    = "dev.cosignproject.cosign/signature"
)

// ErrUnsigned is wrapped when a release has no signature, or none that the
// trusted key made over its digest.
var ErrUnsigned = errors.New("the release is not signed with the trusted key")

// GenerateKey writes a new ECDSA P-256 key pair: the private key (PKCS#8
// PEM, mode 0600) at priv and the public key (PKIX PEM) at priv's name
// with .pub.
func GenerateKey(priv string) (pubPath string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("making a signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", fmt.Errorf("making a signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(priv), 0o700); err != nil {
		return "", err
	}
	if err := atomicfile.Write(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", err
	}
	pub, err := PublicKeyPEM(k)
	if err != nil {
		return "", err
	}
	pubPath = strings.TrimSuffix(priv, filepath.Ext(priv)) + ".pub"
	return pubPath, atomicfile.Write(pubPath, pub, 0o644)
}

// ReadSigningKey reads a PKCS#8 PEM ECDSA private key.
func ReadSigningKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("reading the signing key %s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("reading the signing key %s: %w", path, err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, fmt.Errorf("reading the signing key %s: not an ECDSA P-256 key", path)
	}
	return ek, nil
}

// PublicKeyPEM is the PKIX PEM of k's public key (what cosign reads).
func PublicKeyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads a PKIX PEM ECDSA P-256 public key.
func ParsePublicKey(b []byte) (*ecdsa.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM public key")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("not an ECDSA P-256 public key")
	}
	return ek, nil
}

// KeyID names a public key for people: the start of its SHA-256.
func KeyID(k *ecdsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(k)
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// SignatureTag is the tag cosign gives the signature of digest.
func SignatureTag(digest v1.Hash) string { return digest.Algorithm + "-" + digest.Hex + ".sig" }

// Sign returns the cosign signature image of the image with digest in repo
// (HOST/REPO or a bare name).
func Sign(digest v1.Hash, repo string, key *ecdsa.PrivateKey) (v1.Image, error) {
	if repo == "" {
		repo = "racker"
	}
	ref, err := name.NewDigest(repo + "@" + digest.String())
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", digest, err)
	}
	body, err := json.Marshal(payload.Cosign{Image: ref})
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", digest, err)
	}
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, key, sum[:])
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", digest, err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:       static.NewLayer(body, simpleSigningMediaType),
		Annotations: map[string]string{signatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", digest, err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON), nil
}

// VerifySignature checks that sig (a cosign signature image) holds a
// signature by key over a payload naming digest. Nil sig is unsigned.
func VerifySignature(sig v1.Image, digest v1.Hash, key *ecdsa.PublicKey) error {
	if sig == nil {
		return fmt.Errorf("%w: no signature found for %s", ErrUnsigned, digest)
	}
	m, err := sig.Manifest()
	if err != nil {
		return fmt.Errorf("reading the signature of %s: %w", digest, err)
	}
	layers, err := sig.Layers()
	if err != nil || len(layers) != len(m.Layers) {
		return fmt.Errorf("reading the signature of %s: %v", digest, err)
	}
	for i, desc := range m.Layers {
		b64, ok := desc.Annotations[signatureAnnotation]
		if !ok || desc.MediaType != simpleSigningMediaType || desc.Size > 64<<10 {
			continue
		}
		rawSig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		rc, err := layers[i].Compressed()
		if err != nil {
			continue
		}
		body, err := io.ReadAll(io.LimitReader(rc, 64<<10))
		rc.Close()
		if err != nil || v1.Hash(desc.Digest) != sha256Hash(body) {
			continue
		}
		sum := sha256.Sum256(body)
		if !ecdsa.VerifyASN1(key, sum[:], rawSig) {
			continue
		}
		var p payload.Cosign
		if err := json.Unmarshal(body, &p); err != nil {
			continue
		}
		if p.Image.DigestStr() == digest.String() {
			return nil
		}
	}
	return fmt.Errorf("%w (key %s): no signature by it over %s", ErrUnsigned, KeyID(key), digest)
}

func sha256Hash(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// ShippedKey returns the public key inside a release image (its KeyFile),
// the key a first install may trust.
func ShippedKey(img v1.Image) (*ecdsa.PublicKey, error) {
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		return nil, fmt.Errorf("reading the release's key: %v", err)
	}
	b, err := fileInLayer(layers[len(layers)-1], ImageRoot+"/"+KeyFile, 16<<10) // the release layer, a few KiB
	if err != nil {
		return nil, fmt.Errorf("reading the release's key: %w", err)
	}
	return ParsePublicKey(b)
}

// CheckVersionLabel refuses an image whose release label does not name the
// version that was asked for: a correctly signed 1.0.0 served under the
// tag 1.1.0 is still not 1.1.0.
func CheckVersionLabel(img v1.Image, version string) (*Info, error) {
	info, err := ImageInfo(img)
	if err != nil {
		return nil, err
	}
	want, err := ParseVersion(version)
	if err != nil {
		return nil, err
	}
	got, err := ParseVersion(info.Version)
	if err != nil || !got.Equal(want) {
		return nil, fmt.Errorf("the image tagged %s says it is release %s: refused", version, info.Version)
	}
	return info, nil
}
