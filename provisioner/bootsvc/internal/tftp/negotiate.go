package tftp

import (
	"strconv"
	"strings"
)

// MaxWindow caps the RFC 7440 window a client may ask for: 64 blocks of
// 1432 bytes is ~90 KiB in flight, well inside a socket buffer, and past
// ~16 blocks the round trips saved no longer matter.
const MaxWindow = 64

// maxRetries bounds how often a window (or the OACK) is resent without any
// progress before the transfer is given up, as pin/tftp does (5).
const maxRetries = 5

// plan is a read request with its options negotiated: what the sender
// does for it.
type plan struct {
	blksize, window int
	// oack is the OACK packet acknowledging the options granted (RFC
	// 2347); nil when the client asked for none we grant, and then the
	// transfer starts with DATA block 1.
	oack []byte
}

// negotiate decides how an octet-mode read request is sent (ok is false
// for any other mode, which pin/tftp's own sender keeps). It grants the
// options the way pin/tftp did before the sender was Racker's own, so no
// client sees a change: blksize 512..65464 lowered to maxBlockLen, the
// receiving interface's ceiling (RFC 2348; a smaller or larger value is
// ignored, as RFC 2347 allows); tsize with the file's size (RFC 2349);
// windowsize 1..65535 lowered to MaxWindow (RFC 7440). The timeout option
// and unknown ones are ignored. Option names are case-insensitive.
func negotiate(opts map[string]string, mode string, maxBlockLen int, size int64) (plan, bool) {
	if !strings.EqualFold(mode, "octet") {
		return plan{}, false
	}
	lower := make(map[string]string, len(opts))
	for k, v := range opts {
		lower[strings.ToLower(k)] = v
	}
	p := plan{blksize: 512, window: 1}
	var oack []byte
	add := func(name, value string) {
		if oack == nil {
			oack = []byte{0, 6}
		}
		oack = append(append(append(append(oack, name...), 0), value...), 0)
	}
	if b, err := strconv.Atoi(lower["blksize"]); err == nil && b >= 512 && b <= 65464 {
		if maxBlockLen >= 512 && b > maxBlockLen {
			b = maxBlockLen
		}
		p.blksize = b
		add("blksize", strconv.Itoa(b))
	}
	if _, asked := lower["tsize"]; asked {
		add("tsize", strconv.FormatInt(size, 10))
	}
	if w, err := strconv.Atoi(lower["windowsize"]); err == nil && w >= 1 && w <= 65535 {
		p.window = min(w, MaxWindow)
		add("windowsize", strconv.Itoa(p.window))
	}
	p.oack = oack
	return p, true
}
