// Package leases keeps Racker's DHCP leases durable in the state folder.
//
// A lease must survive a crash the moment its ACK leaves the server, yet a
// rack powering on asks for hundreds of leases a second. Rewriting a whole
// lease file per ACK (what holds dnsmasq to ~600 exchanges/s) is therefore
// out: leases are appended to a journal, and concurrent commits share one
// write and one fsync (group commit). The journal is compacted, rarely, by
// writing the live leases to a new file and renaming it into place, so other
// processes reading it (Lookup) always see a whole file.
package leases

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/racker/racker/provisioner/inventory"
)

// File names inside the state folder.
const (
	JournalFile = "leases.jsonl"
	lockFile    = "leases.lock"
)

// Lease is an address given to a MAC until Expires.
type Lease struct {
	MAC     string     `json:"mac"` // lower case, colons
	IP      netip.Addr `json:"ip"`
	Expires time.Time  `json:"expires"`
	// Kind says who holds the lease: node, bmc, mgmt (planned) or pool.
	Kind string `json:"kind,omitempty"`
}

// record is one journal line: a lease given, or (Released) taken back.
type record struct {
	Lease
	Released bool `json:"released,omitempty"`
}

// Lookup returns the last address Racker leased to mac, read from the
// journal in stateDir, for processes other than the one serving DHCP (the
// CLI finds a BMC by its lease). An expired lease still counts: the address
// is where the machine was last seen; a released lease does not. The MAC
// may be in any case and separator style.
func Lookup(stateDir, mac string) (netip.Addr, bool, error) {
	if m, err := inventory.NormalizeMAC(mac); err == nil {
		mac = m
	}
	live, err := readJournal(filepath.Join(stateDir, JournalFile), nil)
	if err != nil {
		return netip.Addr{}, false, err
	}
	l, ok := live[mac]
	return l.IP, ok, nil
}

// readJournal replays a journal into the live leases by MAC. A torn last
// line (a crash in the middle of a write) is skipped and reported through
// log; a torn line in the middle means the file was damaged by something
// else, and it is skipped too, so one bad line never loses every lease.
func readJournal(path string, log *slog.Logger) (map[string]Lease, error) {
	live := map[string]Lease{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return live, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the lease journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if len(b) > 0 {
			var rec record
			if jerr := json.Unmarshal(b, &rec); jerr != nil || rec.MAC == "" {
				if log != nil {
					log.Warn("skipping a damaged line of the lease journal", "path", path, "line", line)
				}
			} else if rec.Released {
				delete(live, rec.MAC)
			} else {
				live[rec.MAC] = rec.Lease
			}
		}
		if errors.Is(err, io.EOF) {
			return live, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the lease journal %s: %w", path, err)
		}
	}
}

// sortedLeases returns the leases ordered by MAC, for stable files and output.
func sortedLeases(m map[string]Lease) []Lease {
	out := make([]Lease, 0, len(m))
	for _, l := range m {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}
