package inventory

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Column names, as used in messages.
const (
	FieldPrimary   = "primary MAC"
	FieldBMC       = "BMC MAC"
	FieldSecondary = "secondary MAC"
	FieldType      = "node type"
	FieldComments  = "comments"
	FieldColumns   = "columns"
)

var macPattern = regexp.MustCompile(`^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){4}$`)

// NormalizeMAC accepts a 48-bit MAC written with ':' or '-' (one separator
// throughout) in either case, and returns it in lower case with colons.
func NormalizeMAC(s string) (string, error) {
	s = strings.TrimSpace(s)
	m := macPattern.FindStringSubmatch(s)
	if m == nil || strings.Count(s, m[1]) != 5 {
		return "", fmt.Errorf("invalid MAC %q (want six hex pairs separated by ':' or '-')", s)
	}
	return strings.ToLower(strings.ReplaceAll(s, "-", ":")), nil
}

// LooksLikeMAC says whether s would parse as a MAC.
func LooksLikeMAC(s string) bool {
	_, err := NormalizeMAC(s)
	return err == nil
}

// Parse reads nodes.csv. name is used in messages. It accepts a UTF-8 BOM,
// CRLF, blank lines, '#' comment lines, an optional header (a first row with
// no MAC in it), whitespace around fields and a missing Comments column. On
// problems it returns the rows it could read and *Problems with all of them.
func Parse(name string, r io.Reader) ([]Node, error) {
	var (
		nodes   []Node
		probs   Problems
		seen    = map[string]macUse{}
		sawRow  bool
		lineNum int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lineNum++
		line := sc.Text()
		if lineNum == 1 {
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		line = strings.TrimRight(line, "\r")
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		fields, err := splitCSVLine(line)
		if err != nil {
			probs.add(name, lineNum, "", "cannot parse as CSV: %v", err)
			continue
		}
		first := !sawRow
		sawRow = true
		if first && !anyMAC(fields) {
			continue // header
		}
		if len(fields) < 4 || len(fields) > 5 {
			probs.add(name, lineNum, FieldColumns, "want 4 or 5 columns (primary MAC, BMC MAC, secondary MAC, node type[, comments]), got %d", len(fields))
			continue
		}
		n := Node{Line: lineNum, Type: fields[3]}
		if len(fields) == 5 {
			n.Comments = fields[4]
		}
		macs := []struct {
			field    string
			dst      *string
			optional bool
		}{
			{FieldPrimary, &n.PrimaryMAC, false},
			{FieldBMC, &n.BMCMAC, false},
			{FieldSecondary, &n.SecondaryMAC, true},
		}
		for i, m := range macs {
			v := fields[i]
			if v == "" {
				if !m.optional {
					probs.add(name, lineNum, m.field, "missing")
				}
				continue
			}
			mac, err := NormalizeMAC(v)
			if err != nil {
				probs.add(name, lineNum, m.field, "%v", err)
				continue
			}
			if prev, dup := seen[mac]; dup {
				where := fmt.Sprintf("line %d (%s)", prev.line, prev.field)
				if prev.line == lineNum {
					where = "this line (" + prev.field + ")"
				}
				probs.add(name, lineNum, m.field, "%s is already used on %s", mac, where)
				continue
			}
			seen[mac] = macUse{lineNum, m.field}
			*m.dst = mac
		}
		switch {
		case n.Type == "":
			n.Type = DefaultType
		case LooksLikeMAC(n.Type):
			probs.add(name, lineNum, FieldType, "%q looks like a MAC: is a column missing or out of order?", n.Type)
		case strings.ContainsAny(n.Type, " \t,/"):
			probs.add(name, lineNum, FieldType, "%q: a node type is one word (letters, digits, '-', '_', '.')", n.Type)
		}
		nodes = append(nodes, n)
	}
	if err := sc.Err(); err != nil {
		probs.add(name, lineNum+1, "", "cannot read: %v", err)
	}
	if len(probs) > 0 {
		return nodes, &probs
	}
	return nodes, nil
}

// macUse is where a MAC was first seen.
type macUse struct {
	line  int
	field string
}

// splitCSVLine splits one line as CSV (quotes allowed) and trims each field.
func splitCSVLine(line string) ([]string, error) {
	cr := csv.NewReader(strings.NewReader(line))
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	rec, err := cr.Read()
	if err != nil {
		return nil, err
	}
	for i := range rec {
		rec[i] = strings.TrimSpace(rec[i])
	}
	return rec, nil
}

func anyMAC(fields []string) bool {
	for _, f := range fields {
		if LooksLikeMAC(f) {
			return true
		}
	}
	return false
}
