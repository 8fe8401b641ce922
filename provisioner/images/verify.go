package images

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Keyring is the set of OpenPGP public keys release files must be signed by.
type Keyring struct {
	entities openpgp.EntityList
	source   string // where the keys came from, for messages
}

// ReadKeyring reads armored (or binary) public keys.
func ReadKeyring(r io.Reader, source string) (*Keyring, error) {
	br := bufio.NewReader(r)
	head, _ := br.Peek(64)
	var list openpgp.EntityList
	var err error
	if bytes.Contains(head, []byte("-----BEGIN PGP")) {
		list, err = openpgp.ReadArmoredKeyRing(br)
	} else {
		list, err = openpgp.ReadKeyRing(br)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the signing key %s: %w", source, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("reading the signing key %s: no key in it", source)
	}
	return &Keyring{entities: list, source: source}, nil
}

// ReadKeyringFile reads the keys of one file.
func ReadKeyringFile(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the signing key: %w", err)
	}
	defer f.Close()
	return ReadKeyring(f, path)
}

// Armored returns the public keys, ASCII-armored: what a node's
// flatcar-install -k imports to check the image it downloads.
func (k *Keyring) Armored() ([]byte, error) {
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, err
	}
	for _, e := range k.entities {
		if err := e.Serialize(w); err != nil {
			return nil, fmt.Errorf("writing the signing key %s: %w", k.source, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Fingerprints lists the primary keys' fingerprints in upper-case hex.
func (k *Keyring) Fingerprints() []string {
	var out []string
	for _, e := range k.entities {
		out = append(out, fmt.Sprintf("%X", e.PrimaryKey.Fingerprint))
	}
	return out
}

// VerifyFile checks path against its detached signature sigPath (binary or
// armored). The error names the file. A signature made while its signing
// key was valid stays good after the key expired (as gpg judges it), so a
// cached older release is not rejected for its age; a revoked key never
// passes.
func (k *Keyring) VerifyFile(path, sigPath string) error {
	sig, err := os.ReadFile(sigPath)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: no signature file %s; refusing an unverified file", path, sigPath)
	}
	if err != nil {
		return fmt.Errorf("%s: reading its signature: %w", path, err)
	}
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN PGP SIGNATURE")) {
		block, err := decodeArmor(sig)
		if err != nil {
			return fmt.Errorf("%s: signature %s: %w", path, sigPath, err)
		}
		sig = block
	}
	check := func(cfg *packet.Config) (*packet.Signature, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer f.Close()
		s, _, err := openpgp.VerifyDetachedSignature(k.entities, bufio.NewReaderSize(f, 1<<20), bytes.NewReader(sig), cfg)
		return s, err
	}
	s, err := check(nil)
	if (errors.Is(err, pgperrors.ErrKeyExpired) || errors.Is(err, pgperrors.ErrSignatureExpired)) && s != nil {
		at := s.CreationTime
		_, err = check(&packet.Config{Time: func() time.Time { return at }})
	}
	if err != nil {
		return fmt.Errorf("%s: bad signature (checked with %s): %w", path, k.source, err)
	}
	return nil
}

func decodeArmor(b []byte) ([]byte, error) {
	block, err := armorDecode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(block)
}
