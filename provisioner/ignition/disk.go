package ignition

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// FlatcarMinDiskBytes is flatcar-install -s's rule: the smallest unmounted
// disk larger than 10,000,000,000 bytes. Racker's install script applies it
// itself and passes the disk with -d, so the first install and every
// reprovision (which must know the disk before it wipes the others) agree.
const FlatcarMinDiskBytes = 10_000_000_000

// DiskRule says how a node's install script picks its install disk. The
// zero value is Flatcar's rule.
type DiskRule struct {
	// Path is a device path (/dev/sda, /dev/disk/by-path/…, or a
	// /dev/disk/by-id/… glob such as /dev/disk/by-id/nvme-Samsung_SSD_980_1TB_*
	// that one type's nodes share); it must name exactly one whole disk.
	Path string
	// MinBytes picks the smallest unused disk of at least this size.
	MinBytes int64
}

// String is the rule as node-types.json spells it.
func (r DiskRule) String() string {
	switch {
	case r.Path != "":
		return r.Path
	case r.MinBytes > 0:
		return ">=" + strconv.FormatInt(r.MinBytes, 10)
	}
	return ""
}

var (
	diskPathRE = regexp.MustCompile(`^/dev/[A-Za-z0-9/_.:+*?-]+$`)
	sizeRE     = regexp.MustCompile(`^([0-9]+)\s*([KMGTP]i?)?B?$`)
)

// ParseDiskRule reads a node type's install_disk setting:
//
//	""                     Flatcar's rule: the smallest unused disk over 10 GB
//	"/dev/…"               that disk: a kernel name, /dev/disk/by-path/…, or
//	                       a /dev/disk/by-id/… name, which may end in a glob
//	                       (* or ?) so that all nodes of a type match
//	">=SIZE"               the smallest unused disk of at least SIZE, e.g.
//	                       ">=400GB"; K, M, G, T, P are powers of 1000 as on
//	                       disk labels (and in Flatcar's "10GB"), Ki … Pi of 1024
func ParseDiskRule(s string) (DiskRule, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return DiskRule{}, nil
	case strings.HasPrefix(s, "/"):
		if !diskPathRE.MatchString(s) || strings.Contains(s, "/../") || strings.HasSuffix(s, "/..") {
			return DiskRule{}, fmt.Errorf("install disk %q: want a /dev path of letters, digits and / _ . : + - (globs * ?)", s)
		}
		return DiskRule{Path: s}, nil
	case strings.HasPrefix(s, ">="):
		n, err := ParseSize(strings.TrimSpace(s[2:]))
		if err != nil {
			return DiskRule{}, fmt.Errorf("install disk %q: %w", s, err)
		}
		if n <= 0 {
			return DiskRule{}, fmt.Errorf("install disk %q: the size must be positive", s)
		}
		return DiskRule{MinBytes: n}, nil
	}
	return DiskRule{}, fmt.Errorf("install disk %q: want a /dev path (/dev/disk/by-path/…, /dev/disk/by-id/…) or a minimum size such as \">=400GB\"", s)
}

// ParseSize reads a size such as 400GB, 480G, 64GiB or 1000000 (bytes).
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("size %q: want a number with an optional K, M, G, T, P (powers of 1000) or Ki … Pi (of 1024) and B", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	unit := m[2]
	base := int64(1000)
	if strings.HasSuffix(unit, "i") {
		base, unit = 1024, strings.TrimSuffix(unit, "i")
	}
	for _, u := range "KMGTP" {
		if unit == "" {
			break
		}
		if n > (1<<63-1)/base {
			return 0, fmt.Errorf("size %q is too large", s)
		}
		n *= base
		if unit == string(u) {
			break
		}
	}
	return n, nil
}
