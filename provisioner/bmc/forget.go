package bmc

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

// PinsFile is where the CLI keeps the Redfish BMCs' certificate pins
// (FilePins), in the state folder.
const PinsFile = "bmc-pins.json"

// Remembered is one thing Racker kept about a BMC in the state folder.
type Remembered struct {
	File  string    `json:"file"`  // bmc-pins.json or bmc-protocols.json
	Key   string    `json:"key"`   // the BMC as the file names it: HOST:PORT or its MAC
	What  string    `json:"what"`  // "TLS key sha256:…", "IPMI protocol lanplus", "auto chose redfish"
	Since time.Time `json:"since"` // when it was learned
}

func (r Remembered) String() string {
	return fmt.Sprintf("%s: %s (%s, since %s)", r.Key, r.What, r.File, r.Since.Format(time.RFC3339))
}

// Forget drops what the state folder remembers of a BMC known by its
// addresses (hosts, on any port) or its MAC: its pinned TLS key, the IPMI
// protocol it spoke (the downgrade guard) and the protocol auto chose for
// it. The next contact learns them again, as with a BMC never seen. That
// is what a replaced BMC needs (a new board at the old address shows a
// key of its own and may speak less), and what a retired one leaves. It
// returns what was forgotten; nothing remembered is no error.
func Forget(stateDir string, hosts []string, mac string) ([]Remembered, error) {
	match := func(key string) bool {
		if mac != "" && key == mac {
			return true
		}
		h, _, err := net.SplitHostPort(key)
		return err == nil && slices.Contains(hosts, h)
	}
	var out []Remembered
	// A file that is not there kept nothing; it is not made (nor its
	// lock, nor the folder) just to find that out.
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(stateDir, name))
		return err == nil
	}
	if !exists(PinsFile) && !exists(ProtocolsFile) {
		return nil, nil
	}
	pins := &FilePins{Path: filepath.Join(stateDir, PinsFile)}
	err := pins.update(func(f *pinFile) bool {
		n := len(out)
		for k, e := range f.BMCs {
			if match(k) {
				out = append(out, Remembered{File: PinsFile, Key: k, What: "TLS key " + e.Key, Since: e.PinnedAt})
				delete(f.BMCs, k)
			}
		}
		return len(out) > n
	})
	if err != nil {
		return out, err
	}
	var mu sync.Mutex
	err = updateProtocolFile(&mu, filepath.Join(stateDir, ProtocolsFile), func(m map[string]protocolEntry) bool {
		n := len(out)
		for k, e := range m {
			if !match(k) {
				continue
			}
			what := "IPMI protocol " + e.Protocol
			if k == mac {
				what = "auto chose " + e.Protocol
			}
			out = append(out, Remembered{File: ProtocolsFile, Key: k, What: what, Since: e.Since})
			delete(m, k)
		}
		return len(out) > n
	})
	sort.Slice(out, func(i, j int) bool { return out[i].File+out[i].Key < out[j].File+out[j].Key })
	return out, err
}
