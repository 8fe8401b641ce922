package images

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"slices"
)

// flatcarKey is Flatcar's image signing key as published by the Flatcar
// project (the key flatcar-install itself verifies with). Empty when Racker
// was built without it; then Spec.KeyFile is required.
//
//go:embed data/flatcar-image-signing-key.asc
var flatcarKey []byte

func shippedFlatcarKey() (*Keyring, error) {
	if len(bytes.TrimSpace(flatcarKey)) == 0 {
		return nil, errors.New("flatcar: this build ships no Flatcar image signing key; set images.Spec.KeyFile")
	}
	k, err := ReadKeyring(bytes.NewReader(flatcarKey), "the shipped Flatcar image signing key")
	if err != nil {
		return nil, err
	}
	if !slices.Contains(k.Fingerprints(), FlatcarKeyFingerprint) {
		return nil, fmt.Errorf("flatcar: the shipped signing key is not %s", FlatcarKeyFingerprint)
	}
	return k, nil
}
