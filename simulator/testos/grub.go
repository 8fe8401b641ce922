package testos

import (
	"strings"
)

// OEMGrubFile is the OEM partition's grub.cfg, which Flatcar's GRUB
// sources before it boots: its `set linux_append="…"` adds kernel
// arguments (Lokomotive's installer points ignition.config.url at the
// node's installed config this way).
const OEMGrubFile = "grub.cfg"

// GrubAppend is what grub.cfg's assignments to linux_append add to the
// kernel command line: GRUB runs them in order, so a later one replaces
// an earlier one, and "$linux_append" or "${linux_append}" in a value is
// the value so far.
func GrubAppend(cfg string) map[string]string {
	val := ""
	for _, line := range strings.Split(cfg, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "set linux_append=")
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if len(rest) >= 2 && (rest[0] == '"' || rest[0] == '\'') && rest[len(rest)-1] == rest[0] {
			rest = rest[1 : len(rest)-1]
		}
		val = strings.NewReplacer("${linux_append}", val, "$linux_append", val).Replace(rest)
	}
	return ParseCmdline(val)
}
