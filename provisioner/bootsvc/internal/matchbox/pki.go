package matchbox

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/racker/racker/provisioner/bootsvc/api"
)

// Certificates of the gRPC API, as upstream Racker's cert-gen script made
// them (a private CA, one server and one client certificate), but made in
// Go with ECDSA P-256 keys. Upstream's certificates expired after a year
// without warning; these are valid for ten years and renewed at start-up
// when less than RenewBefore is left (the CA too, which renews the rest).
const (
	Validity    = 10 * 365 * 24 * time.Hour
	RenewBefore = 90 * 24 * time.Hour

	caKeyFile      = "ca.key"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
)

// PKI names the certificate files in the state folder.
type PKI struct {
	Dir       string // STATE/matchbox: ca.crt, ca.key, server.crt, server.key (0700)
	ClientDir string // STATE/matchbox-client: ca.crt, client.crt, client.key, for lokoctl
}

// NewPKI is the PKI of a state folder.
func NewPKI(stateDir string) PKI {
	return PKI{Dir: filepath.Join(stateDir, api.MatchboxDir), ClientDir: filepath.Join(stateDir, api.MatchboxClientDir)}
}

// CA, ServerCert, … are the files' paths.
func (p PKI) CA() string         { return filepath.Join(p.Dir, api.MatchboxCAFile) }
func (p PKI) ServerCert() string { return filepath.Join(p.Dir, serverCertFile) }
func (p PKI) ServerKey() string  { return filepath.Join(p.Dir, serverKeyFile) }
func (p PKI) ClientCA() string   { return filepath.Join(p.ClientDir, api.MatchboxCAFile) }
func (p PKI) ClientCert() string { return filepath.Join(p.ClientDir, api.MatchboxClientCertFile) }
func (p PKI) ClientKey() string  { return filepath.Join(p.ClientDir, api.MatchboxClientKeyFile) }

// Ensure makes the certificates that are missing, unreadable, not signed by
// the CA, expiring within RenewBefore at now, or (the server's) not
// naming every address in hosts, and keeps the others, so lokoctl's copy
// of the client bundle stays valid across restarts. It says what it
// renewed (nil when nothing).
func (p PKI) Ensure(hosts []netip.Addr, now time.Time) (renewed []string, err error) {
	for _, d := range []string{p.Dir, p.ClientDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("making the matchbox certificate folder: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("making the matchbox certificate folder private: %w", err)
		}
	}
	ca, caKey, err := loadPair(p.CA(), filepath.Join(p.Dir, caKeyFile))
	if err != nil || !fresh(ca, now) || !ca.IsCA {
		if ca, caKey, err = newCert(p.CA(), filepath.Join(p.Dir, caKeyFile), nil, nil, certSpec{ca: true}, now); err != nil {
			return nil, fmt.Errorf("making the matchbox CA: %w", err)
		}
		renewed = append(renewed, "CA")
	}
	caPEM, err := os.ReadFile(p.CA())
	if err != nil {
		return nil, fmt.Errorf("reading the matchbox CA: %w", err)
	}
	leaves := []struct {
		name, cert, key string
		spec            certSpec
	}{
		{"server", p.ServerCert(), p.ServerKey(), certSpec{server: true, hosts: hosts}},
		{"client", p.ClientCert(), p.ClientKey(), certSpec{}},
	}
	for _, l := range leaves {
		cert, _, err := loadPair(l.cert, l.key)
		if err == nil && fresh(cert, now) && cert.CheckSignatureFrom(ca) == nil && covers(cert, l.spec.hosts) {
			continue
		}
		if _, _, err := newCert(l.cert, l.key, ca, caKey, l.spec, now); err != nil {
			return nil, fmt.Errorf("making the matchbox %s certificate: %w", l.name, err)
		}
		renewed = append(renewed, l.name)
	}
	// The client bundle carries its own copy of the CA, so lokoctl's
	// folder is self-contained.
	if old, err := os.ReadFile(p.ClientCA()); err != nil || !bytes.Equal(old, caPEM) {
		if err := writeFile(p.ClientCA(), caPEM, 0o644); err != nil {
			return nil, fmt.Errorf("writing the client bundle's CA: %w", err)
		}
	}
	return renewed, nil
}

// ServerTLS is the gRPC server's configuration: TLS 1.2 or newer, and a
// client certificate signed by the CA required (mutual TLS, as matchbox's
// own tlsutil.ServerConfig does it).
func (p PKI) ServerTLS() (*tls.Config, error) {
	return p.tlsConfig(p.ServerCert(), p.ServerKey(), p.CA(), true)
}

// ClientTLS is a client's configuration from the client bundle (what
// lokoctl's Terraform provider loads from matchbox_*_path).
func (p PKI) ClientTLS() (*tls.Config, error) {
	return p.tlsConfig(p.ClientCert(), p.ClientKey(), p.ClientCA(), false)
}

func (p PKI) tlsConfig(certFile, keyFile, caFile string, server bool) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the matchbox certificate %s: %w", certFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("loading the matchbox CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("loading the matchbox CA: %s holds no certificate", caFile)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if server {
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
	} else {
		c.RootCAs = pool
	}
	return c, nil
}

type certSpec struct {
	ca, server bool
	hosts      []netip.Addr // server: the addresses it answers on
}

// newCert makes a key and a certificate (self-signed for the CA, else
// signed by parent) and writes both, the key with mode 0600.
func newCert(certFile, keyFile string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, spec certSpec, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    now.Add(-time.Hour), // a node's clock a little behind
		NotAfter:     now.Add(Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	switch {
	case spec.ca:
		tmpl.Subject = pkix.Name{CommonName: "Racker matchbox CA"}
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	case spec.server:
		tmpl.Subject = pkix.Name{CommonName: "matchbox"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost", "matchbox"}
		for _, h := range append([]netip.Addr{netip.MustParseAddr("127.0.0.1")}, spec.hosts...) {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(h.AsSlice()))
		}
	default:
		tmpl.Subject = pkix.Name{CommonName: "lokoctl"}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if parent != tmpl && tmpl.NotAfter.After(parent.NotAfter) {
		tmpl.NotAfter = parent.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// loadPair reads a certificate and its ECDSA key.
func loadPair(certFile, keyFile string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New(keyFile + " is not an ECDSA key")
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	return cert, key, err
}

func fresh(c *x509.Certificate, now time.Time) bool {
	return !now.Before(c.NotBefore) && now.Add(RenewBefore).Before(c.NotAfter)
}

func covers(c *x509.Certificate, hosts []netip.Addr) bool {
	for _, h := range hosts {
		if !slices.ContainsFunc(c.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IP(h.AsSlice())) }) {
			return false
		}
	}
	return true
}

// writeFile replaces path atomically (a crash never leaves half a key).
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
