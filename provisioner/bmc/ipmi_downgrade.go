package bmc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/racker/racker/provisioner/internal/atomicfile"
)

// No silent IPMI downgrade. A responder on the BMC's address that drops
// RMCP+ (IPMI 2.0) would make a client fall back to IPMI 1.5, whose
// "straight password" authentication puts the rack-wide BMC password on
// the wire in clear, and whose MD5 is no protection against an active
// relay either. So:
//
//   - which protocol answered is remembered per BMC in a ProtocolStore (the
//     CLI keeps a file in the state folder), across operations and
//     processes: once lanplus worked, a BMC is never spoken to otherwise;
//   - IPMI 1.5 is tried only with Options.AllowIPMI15 (--ipmi-allow-v15),
//     for BMCs that have no IPMI 2.0;
//   - and the socket itself refuses to send an IPMI packet whose session
//     authentication type is "straight password" or OEM, or a 1.5 packet
//     at all on a lanplus session: whatever a capabilities answer claims,
//     the password bytes never leave the process.

// ProtocolStore remembers which session protocol each BMC answered
// ("host:port" → "lanplus" or "lan").
type ProtocolStore interface {
	Protocol(bmc string) (string, error)
	Learned(bmc, protocol string) error
}

// MemoryProtocols keeps what was learned for the life of the process (the
// default; tests).
type MemoryProtocols struct {
	mu sync.Mutex
	m  map[string]string
}

func (p *MemoryProtocols) Protocol(bmc string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[bmc], nil
}

func (p *MemoryProtocols) Learned(bmc, protocol string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]string{}
	}
	if p.m[bmc] != protoLanplus { // lanplus, once learned, stays
		p.m[bmc] = protocol
	}
	return nil
}

var processProtocols = &MemoryProtocols{}

// ProtocolsFile is where the CLI keeps the protocols, in the state folder.
const ProtocolsFile = "bmc-protocols.json"

// FileProtocols keeps the protocols in a JSON file, read and written under
// an flock (racker serve's orchestrator and a CLI command agree), each
// write replacing the file atomically.
type FileProtocols struct {
	Path string
	mu   sync.Mutex
}

type protocolEntry struct {
	Protocol string    `json:"protocol"`
	Since    time.Time `json:"since"`
}

func (p *FileProtocols) Protocol(bmc string) (string, error) {
	var out string
	err := p.update(func(m map[string]protocolEntry) bool {
		out = m[bmc].Protocol
		return false
	})
	return out, err
}

func (p *FileProtocols) Learned(bmc, protocol string) error {
	return p.update(func(m map[string]protocolEntry) bool {
		if cur := m[bmc].Protocol; cur == protocol || cur == protoLanplus {
			return false
		}
		m[bmc] = protocolEntry{Protocol: protocol, Since: time.Now().UTC()}
		return true
	})
}

func (p *FileProtocols) update(fn func(map[string]protocolEntry) bool) error {
	return updateProtocolFile(&p.mu, p.Path, fn)
}

// updateProtocolFile runs fn on the entries of the protocols file at path
// (FileProtocols' and FileChoices': one file says how each BMC is spoken
// to) under mu and an flock, and writes them back atomically when fn says
// they changed.
func updateProtocolFile(mu *sync.Mutex, path string, fn func(map[string]protocolEntry) bool) error {
	mu.Lock()
	defer mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("while making the folder of %s: %w", path, err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("while locking %s: %w", path, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("while locking %s: %w", path, err)
	}
	m := map[string]protocolEntry{}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("while reading the BMC protocols: %w", err)
	default:
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("while reading the BMC protocols in %s: %w", path, err)
		}
	}
	if !fn(m) {
		return nil
	}
	out, _ := json.MarshalIndent(m, "", "  ")
	return atomicfile.Write(path, append(out, '\n'), 0o600)
}

// ErrDowngrade is wrapped when Racker refuses to speak to a BMC with less
// than the protocol it answered before, or to send its password in clear.
var ErrDowngrade = errors.New("refusing an IPMI protocol downgrade")

// IPMI session authentication types (IPMI 2.0 §13.6, the byte after the
// RMCP header).
const (
	authNone     = 0x00
	authMD2      = 0x01
	authMD5      = 0x02
	authPassword = 0x04
	authOEM      = 0x05
	authRMCPPlus = 0x06
)

// guardDialer hands go-ipmi a UDP socket that checks every packet before
// it leaves: lanplus sends only unauthenticated pre-session requests and
// RMCP+; lan (IPMI 1.5) sends no straight-password or OEM packet.
type guardDialer struct{ lanplus bool }

func (g guardDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, lanplus: g.lanplus}, nil
}

type guardConn struct {
	net.Conn
	lanplus bool
}

func (c *guardConn) Write(b []byte) (int, error) {
	// RMCP: version 6, reserved, sequence, class; class 7 is IPMI.
	if len(b) > 4 && b[0] == 0x06 && b[3]&0x1f == 0x07 {
		switch auth := b[4]; {
		case auth == authPassword || auth == authOEM:
			return 0, fmt.Errorf("%w: not sending an IPMI packet with straight-password or OEM authentication (type %d)", ErrDowngrade, auth)
		case c.lanplus && auth != authNone && auth != authRMCPPlus:
			return 0, fmt.Errorf("%w: not sending an IPMI 1.5 authenticated packet on an IPMI 2.0 connection", ErrDowngrade)
		case !c.lanplus && auth != authNone && auth != authMD2 && auth != authMD5:
			return 0, fmt.Errorf("%w: not sending an IPMI packet with authentication type %d on an IPMI 1.5 connection", ErrDowngrade, auth)
		}
	}
	return c.Conn.Write(b)
}
