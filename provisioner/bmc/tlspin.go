package bmc

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// BMCs ship with self-signed certificates that no CA vouches for, so a
// Redfish client either skips verification (and hands the BMC password to
// whoever answers) or trusts the certificate the BMC shows the first time
// and refuses any other afterwards, as SSH does with host keys. Racker does
// the latter: the first connection to a BMC pins the SHA-256 of its public
// key (SubjectPublicKeyInfo, so a certificate re-issued with the same key
// still matches), and a later key mismatch is an error that names both
// fingerprints. Options.Insecure turns checking off, explicitly.

// PinStore keeps the certificate pinned for each Redfish BMC. The CLI keeps
// one file in the state folder (FilePins); tests use MemoryPins.
type PinStore interface {
	// Pin returns the fingerprint pinned for bmc ("host:port"). When none
	// is, it pins fingerprint and returns it with first=true. Checking and
	// pinning are one step, so two first connections cannot pin two keys.
	Pin(bmc, fingerprint string) (pinned string, first bool, err error)
}

// ErrCertificateChanged is wrapped when a BMC shows a different key than the
// one pinned on first use: a replaced BMC (forget its pin), or someone
// answering in its place.
var ErrCertificateChanged = errors.New("the BMC's TLS certificate changed since it was pinned on first use")

// PinMismatchError says which BMC showed which key, and what was pinned.
type PinMismatchError struct {
	BMC, Pinned, Got string
	Store            string // where the pin is kept, for the operator
}

func (e *PinMismatchError) Error() string {
	s := fmt.Sprintf("BMC %s shows TLS key %s, but %s is pinned", e.BMC, e.Got, e.Pinned)
	if e.Store != "" {
		s += " (in " + e.Store + "; if the BMC was replaced or its key renewed, forget the old key: racker bmc forget NODE)"
	}
	return s
}

func (e *PinMismatchError) Unwrap() error { return ErrCertificateChanged }

// Fingerprint is the pin of a certificate: "sha256:" and the hex SHA-256 of
// its SubjectPublicKeyInfo.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// pinVerifier checks the server's leaf certificate against the store. It
// is tls.Config.VerifyConnection with InsecureSkipVerify set: the chain is
// not checked against CAs (a BMC's never would be), the pin is.
func pinVerifier(store PinStore, bmc string, onVerified func(fp string, first bool)) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("BMC %s sent no TLS certificate", bmc)
		}
		fp := Fingerprint(cs.PeerCertificates[0])
		pinned, first, err := store.Pin(bmc, fp)
		if err != nil {
			return fmt.Errorf("while checking the pinned TLS certificate of %s: %w", bmc, err)
		}
		if pinned != fp {
			e := &PinMismatchError{BMC: bmc, Pinned: pinned, Got: fp}
			if s, ok := store.(fmt.Stringer); ok {
				e.Store = s.String()
			}
			return e
		}
		if onVerified != nil {
			onVerified(fp, first)
		}
		return nil
	}
}

// MemoryPins keeps pins for the life of the process: for tests, and for
// callers that open no state folder (every process then trusts on its own
// first use, so the CLI gives FilePins instead).
type MemoryPins struct {
	mu sync.Mutex
	m  map[string]string
}

func (p *MemoryPins) Pin(bmc, fp string) (string, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if have, ok := p.m[bmc]; ok {
		return have, false, nil
	}
	if p.m == nil {
		p.m = map[string]string{}
	}
	p.m[bmc] = fp
	return fp, true, nil
}

// processPins is what a controller uses when Options.Pins is nil.
var processPins = &MemoryPins{}

// FilePins keeps pins in a JSON file (mode 0600), read and written under
// an flock so several racker processes (serve, a CLI command) agree on the
// first pin. Each write replaces the file atomically.
type FilePins struct {
	Path string
	mu   sync.Mutex
}

// pinFile is the file's content: one entry per BMC.
type pinFile struct {
	BMCs map[string]pinEntry `json:"bmcs"`
}

type pinEntry struct {
	Key      string    `json:"key"` // Fingerprint
	PinnedAt time.Time `json:"pinned_at"`
}

func (p *FilePins) String() string { return p.Path }

func (p *FilePins) Pin(bmc, fp string) (string, bool, error) {
	var pinned string
	var first bool
	err := p.update(func(f *pinFile) bool {
		if e, ok := f.BMCs[bmc]; ok {
			pinned = e.Key
			return false
		}
		f.BMCs[bmc] = pinEntry{Key: fp, PinnedAt: time.Now().UTC()}
		pinned, first = fp, true
		return true
	})
	return pinned, first, err
}

// Forget drops the pin of bmc (a replaced BMC); the next connection pins
// again. It says whether there was one.
func (p *FilePins) Forget(bmc string) (bool, error) {
	found := false
	err := p.update(func(f *pinFile) bool {
		_, found = f.BMCs[bmc]
		delete(f.BMCs, bmc)
		return found
	})
	return found, err
}

// List returns the pinned BMCs, sorted.
func (p *FilePins) List() ([]string, error) {
	var bmcs []string
	err := p.update(func(f *pinFile) bool {
		for b := range f.BMCs {
			bmcs = append(bmcs, b)
		}
		return false
	})
	sort.Strings(bmcs)
	return bmcs, err
}

// update runs fn on the file's content under the lock and writes it back
// when fn says it changed.
func (p *FilePins) update(fn func(*pinFile) bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(p.Path), 0o700); err != nil {
		return fmt.Errorf("while making the folder of %s: %w", p.Path, err)
	}
	lock, err := os.OpenFile(p.Path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("while locking %s: %w", p.Path, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("while locking %s: %w", p.Path, err)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	f := pinFile{BMCs: map[string]pinEntry{}}
	data, err := os.ReadFile(p.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("while reading the pinned BMC certificates: %w", err)
	default:
		if err := json.Unmarshal(data, &f); err != nil {
			return fmt.Errorf("while reading the pinned BMC certificates in %s: %w", p.Path, err)
		}
		if f.BMCs == nil {
			f.BMCs = map[string]pinEntry{}
		}
	}
	if !fn(&f) {
		return nil
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.Path), filepath.Base(p.Path)+".*")
	if err != nil {
		return fmt.Errorf("while writing %s: %w", p.Path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(out, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("while writing %s: %w", p.Path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("while writing %s: %w", p.Path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("while writing %s: %w", p.Path, err)
	}
	if err := os.Rename(tmp.Name(), p.Path); err != nil {
		return fmt.Errorf("while writing %s: %w", p.Path, err)
	}
	return nil
}
