package bmc

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

var (
	// ErrAuth is wrapped by errors for a wrong user name or password. It is
	// never retried: BMCs lock accounts after a few failures.
	ErrAuth = errors.New("authentication failed (check ipmi_user and ipmi_password in the OEM folder)")
	// ErrNoAnswer is wrapped when the BMC did not answer at all.
	ErrNoAnswer = errors.New("no answer")
	// ErrConsoleBusy is wrapped when a serial console is already open on the
	// node: a serial port has one reader, and IPMI allows one SOL session.
	ErrConsoleBusy = errors.New("a serial console is already open on this node (only one at a time; close the other one first)")
)

// isAuthError says whether a session setup error means bad credentials.
// go-ipmi reports a mismatching RAKP code as ErrRAKPAuthentication; an
// unknown user comes back as an RMCP+ status ("unauthorized name") and IPMI
// 1.5 as a completion code on Activate Session or Get Session Challenge.
func isAuthError(err error) bool {
	if errors.Is(err, client.ErrRAKPAuthentication) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"rakp authentication failed", "unauthorized name", "invalid integrity", "invalid name", "unauthorized role"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// isTimeout says whether err means the BMC did not answer in time.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// go-ipmi joins per-cipher-suite errors as text, so match its wording.
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"timed out", "deadline exceeded", "connection refused", "no datagram matched", "no matching ipmi response"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// completionCode returns the IPMI completion code inside err, if any: the
// BMC answered, so retrying the same request is pointless.
func completionCode(err error) (types.CompletionCode, bool) {
	if re, ok := types.IsResponseError(err); ok {
		return re.CompletionCode(), true
	}
	return 0, false
}

// transientCode says whether a completion code means "try again later":
// node busy (C0h), timeout (C3h), out of space (C4h), or no response
// could be provided (CEh). Any other code is the BMC's final answer.
func transientCode(cc types.CompletionCode) bool {
	switch uint8(cc) {
	case 0xc0, 0xc3, 0xc4, 0xce:
		return true
	}
	return false
}
