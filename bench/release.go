package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// benchVersion is the version of the bench's own test OS release folder.
const benchVersion = "bench-1"

// signRelease makes dir a release folder racker serve accepts, as
// scripts/build-testos.sh does: version.txt, detached signatures of it and
// of the image by a throwaway key, and that key as image-signing-key.asc.
func signRelease(dir, image string) error {
	e, err := openpgp.NewEntity("racker bench", "throwaway", "bench@racker.invalid", nil)
	if err != nil {
		return fmt.Errorf("while making the bench's signing key: %w", err)
	}
	var pub bytes.Buffer
	w, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		return err
	}
	if err := e.Serialize(w); err != nil {
		return err
	}
	w.Close()
	if err := os.WriteFile(filepath.Join(dir, "image-signing-key.asc"), pub.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "version.txt"), []byte("FLATCAR_VERSION="+benchVersion+"\n"), 0o644); err != nil {
		return err
	}
	for _, f := range []string{"version.txt", image} {
		data, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		var sig bytes.Buffer
		err = openpgp.DetachSign(&sig, e, data, nil)
		data.Close()
		if err != nil {
			return fmt.Errorf("while signing %s: %w", f, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f+".sig"), sig.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
