package testos

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
)

// DecodeDataURL decodes an RFC 2397 data: URL, the way Ignition embeds file
// contents ("data:,percent%20encoded" or "data:text/plain;base64,...").
func DecodeDataURL(u string) ([]byte, error) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return nil, fmt.Errorf("not a data URL")
	}
	meta, payload, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, fmt.Errorf("data URL without a comma")
	}
	if strings.HasSuffix(meta, ";base64") {
		payload, err := url.PathUnescape(payload)
		if err != nil {
			return nil, fmt.Errorf("while unescaping a base64 data URL: %w", err)
		}
		b, err := base64.StdEncoding.DecodeString(payload)
		if err != nil {
			if b, err = base64.RawStdEncoding.DecodeString(payload); err != nil {
				return nil, fmt.Errorf("while decoding a base64 data URL: %w", err)
			}
		}
		return b, nil
	}
	s, err := url.PathUnescape(payload)
	if err != nil {
		return nil, fmt.Errorf("while unescaping a data URL: %w", err)
	}
	return []byte(s), nil
}
