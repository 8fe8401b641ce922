package inventory

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with the OEM files.
type Problem struct {
	File  string // nodes.csv, ipmi_user, ipmi_password
	Line  int    // 0 when the problem concerns the whole file
	Field string // column name, or "" for the whole line or file
	Msg   string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	if p.Field != "" {
		b.WriteString(": ")
		b.WriteString(p.Field)
	}
	b.WriteString(": ")
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found, reported at once; it is the error type of
// Parse and Load.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps *Problems) add(file string, line int, field, format string, args ...any) {
	*ps = append(*ps, Problem{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// sort orders problems by file (nodes.csv first) then line, keeping the
// order of problems on the same line.
func (ps Problems) sort() {
	rank := func(f string) int {
		switch f {
		case NodesFile:
			return 0
		case UserFile:
			return 1
		case PasswordFile:
			return 2
		}
		return 3
	}
	sort.SliceStable(ps, func(i, j int) bool {
		if ri, rj := rank(ps[i].File), rank(ps[j].File); ri != rj {
			return ri < rj
		}
		return ps[i].Line < ps[j].Line
	})
}
