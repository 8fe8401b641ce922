package vbmc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"
)

// listenRedfish serves the Redfish service over TLS on addr; stop shuts
// it down (requests under way get a moment to finish).
func (r *runner) listenRedfish(addr netip.Addr) (stop func(), err error) {
	ap := netip.AddrPortFrom(addr, uint16(r.cfg.RedfishPort))
	ln, err := net.Listen("tcp4", ap.String())
	if err != nil {
		return nil, fmt.Errorf("while listening for Redfish on %s: %w", ap, err)
	}
	srv := &http.Server{
		Handler: r.redfish,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{r.cert},
			MinVersion:   tls.VersionTLS12,
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		// Handshake failures (a client refusing the self-signed
		// certificate) are normal here: debug level.
		ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("Redfish server stopped", "addr", ap.String(), "err", err)
		}
	}()
	bound := ln.Addr().(*net.TCPAddr).AddrPort()
	r.log.Info("Redfish listening", "addr", bound.String())
	if r.cfg.OnRedfishListen != nil {
		r.cfg.OnRedfishListen(bound)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}, nil
}

// A BMC ships with a self-signed certificate made at the factory and keeps
// it across reboots and address changes; it names the BMC, not an address
// (which DHCP hands out later). Clients therefore cannot verify it against a
// CA and either pin it on first use (Racker) or skip verification (sushy
// with verify=False). The vBMC does the same: one self-signed certificate
// per BMC, kept in files when the simulator gives their paths, so a
// restarted vBMC shows the certificate a client pinned before.

// serverCertificate loads the certificate and key from certFile and keyFile,
// or makes a new pair (and writes it there, when paths are given).
func serverCertificate(certFile, keyFile, name string) (tls.Certificate, error) {
	if certFile != "" && keyFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return tls.Certificate{}, fmt.Errorf("while loading the Redfish TLS certificate %s: %w", certFile, err)
		}
	}
	certPEM, keyPEM, err := selfSigned(name)
	if err != nil {
		return tls.Certificate{}, err
	}
	if certFile != "" && keyFile != "" {
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			return tls.Certificate{}, fmt.Errorf("while writing the Redfish TLS key: %w", err)
		}
		if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
			return tls.Certificate{}, fmt.Errorf("while writing the Redfish TLS certificate: %w", err)
		}
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// selfSigned makes an ECDSA P-256 certificate for the BMC of node name,
// valid for ten years, as factory certificates are.
func selfSigned(name string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("while making the Redfish TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vbmc-" + name, Organization: []string{"racker-sim"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"vbmc-" + name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("while making the Redfish TLS certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}
