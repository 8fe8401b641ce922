// Command testos-sign signs the test OS's release files the way Flatcar's
// build signs its own: a detached binary OpenPGP signature FILE.sig beside
// each file, made with the release's image signing key, whose public half is
// shipped in the release folder (flatcar-install -k takes it, Racker serves
// it to the nodes and verifies the release with it):
//
//	testos-sign -key CACHE/image-signing-key.private.asc -pub REL/image-signing-key.asc FILE...
//
// The key is a test key: it is made on first use and kept, unencrypted, in
// the build cache, so rebuilds keep signing with the same key. It signs
// nothing but test OS builds.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

func main() {
	keyFile := flag.String("key", "", "the private signing key (armored); made when missing")
	pubFile := flag.String("pub", "", "where to write the armored public key")
	flag.Parse()
	if *keyFile == "" || *pubFile == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*keyFile, *pubFile, flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "testos-sign: %v\n", err)
		os.Exit(1)
	}
}

func run(keyFile, pubFile string, files []string) error {
	key, err := loadOrMakeKey(keyFile)
	if err != nil {
		return err
	}
	var pub bytes.Buffer
	w, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		return err
	}
	if err := key.Serialize(w); err != nil {
		return fmt.Errorf("while writing the public key: %w", err)
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := writeFile(pubFile, pub.Bytes(), 0o644); err != nil {
		return err
	}
	for _, f := range files {
		if err := sign(key, f); err != nil {
			return err
		}
	}
	return nil
}

// loadOrMakeKey reads the private key, or makes an RSA 3072 key (what gpg
// makes by default, so every gpg a node might carry verifies it) and keeps it.
func loadOrMakeKey(path string) (*openpgp.Entity, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		e, err := openpgp.NewEntity("Racker test OS image signing key", "test key, signs simulator builds only",
			"testos@racker.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 3072})
		if err != nil {
			return nil, fmt.Errorf("while making the signing key: %w", err)
		}
		var out bytes.Buffer
		w, err := armor.Encode(&out, openpgp.PrivateKeyType, nil)
		if err != nil {
			return nil, err
		}
		if err := e.SerializePrivate(w, nil); err != nil {
			return nil, fmt.Errorf("while writing the signing key: %w", err)
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		if err := writeFile(path, out.Bytes(), 0o600); err != nil {
			return nil, err
		}
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("while reading the signing key: %w", err)
	}
	list, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("while reading the signing key %s: %w", path, err)
	}
	if len(list) != 1 || list[0].PrivateKey == nil {
		return nil, fmt.Errorf("%s: want exactly one private key", path)
	}
	return list[0], nil
}

func sign(key *openpgp.Entity, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("while signing: %w", err)
	}
	defer f.Close()
	var sig bytes.Buffer
	if err := openpgp.DetachSign(&sig, key, f, nil); err != nil {
		return fmt.Errorf("while signing %s: %w", path, err)
	}
	return writeFile(path+".sig", sig.Bytes(), 0o644)
}

// writeFile writes through a temporary file and a rename, so a reader never
// sees half a key or signature.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("while writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("while writing %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("while writing %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}
