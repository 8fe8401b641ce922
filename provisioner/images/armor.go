package images

import (
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

func armorDecode(r io.Reader) (io.Reader, error) {
	block, err := armor.Decode(r)
	if err != nil {
		return nil, fmt.Errorf("decoding armor: %w", err)
	}
	return block.Body, nil
}
