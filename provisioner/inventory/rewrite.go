package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/racker/racker/provisioner/internal/atomicfile"
)

// nodes.csv belongs to the operator: Racker changes it only where a
// lifecycle command must (racker replace puts a new machine's MACs in a
// row, racker retire takes a row out), one row at a time, keeping every
// other byte — comments, blank lines, the header, line endings — and
// leaving the old row as a comment, so the file tells its own history. The
// file is replaced atomically: a crash leaves the old file or the new one.

// ErrNoRow says that no row of nodes.csv has the MAC a rewrite names.
var ErrNoRow = errors.New("no row of nodes.csv has that primary MAC")

// FormatRow is n as a nodes.csv row (MACs in the file's canonical form).
func FormatRow(n Node) string {
	fields := []string{n.PrimaryMAC, n.BMCMAC, n.SecondaryMAC, n.Type}
	if n.Comments != "" {
		c := n.Comments
		if strings.ContainsAny(c, ",\"") {
			c = `"` + strings.ReplaceAll(c, `"`, `""`) + `"`
		}
		fields = append(fields, c)
	}
	return strings.Join(fields, ", ")
}

// ReplaceRow puts row in place of the row whose primary MAC is oldPrimary,
// with a comment line above it saying note and what the row was.
func ReplaceRow(dir, oldPrimary string, row Node, note string) error {
	return editRow(dir, oldPrimary, func(old string) string {
		return "# " + note + ": was " + old + "\n" + FormatRow(row)
	})
}

// RemoveRow turns the row whose primary MAC is primary into a comment
// saying note.
func RemoveRow(dir, primary, note string) error {
	return editRow(dir, primary, func(old string) string { return "# " + note + ": " + old })
}

// editRow replaces the one row with the given primary MAC by what edit
// makes of it (without its line ending, which is kept).
func editRow(dir, primary string, edit func(old string) string) error {
	path := filepath.Join(dir, NodesFile)
	mac, err := NormalizeMAC(primary)
	if err != nil {
		return fmt.Errorf("rewriting %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("rewriting %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("rewriting %s: %w", path, err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	found := -1
	for i, l := range lines {
		text := strings.TrimRight(string(l), "\r\n")
		trimmed := strings.TrimSpace(strings.TrimPrefix(text, "\uFEFF"))
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		fields, err := splitCSVLine(strings.TrimPrefix(text, "\uFEFF"))
		if err != nil || len(fields) == 0 {
			continue
		}
		if m, err := NormalizeMAC(fields[0]); err == nil && m == mac {
			if found >= 0 {
				return fmt.Errorf("rewriting %s: lines %d and %d both have the primary MAC %s", path, found+1, i+1, mac)
			}
			found = i
		}
	}
	if found < 0 {
		return fmt.Errorf("rewriting %s: %w (%s)", path, ErrNoRow, mac)
	}
	l := string(lines[found])
	body := strings.TrimRight(l, "\r\n")
	ending := l[len(body):]
	if ending == "" {
		ending = "\n"
	}
	bom := ""
	if found == 0 && strings.HasPrefix(body, "\uFEFF") {
		bom, body = "\uFEFF", strings.TrimPrefix(body, "\uFEFF")
	}
	eol := "\n"
	if strings.HasSuffix(ending, "\r\n") {
		eol = "\r\n"
	}
	out := strings.ReplaceAll(edit(strings.TrimSpace(body)), "\n", eol)
	lines[found] = []byte(bom + out + ending)
	if err := atomicfile.Write(path, bytes.Join(lines, nil), st.Mode().Perm()); err != nil {
		return fmt.Errorf("rewriting %s: %w", path, err)
	}
	return nil
}
