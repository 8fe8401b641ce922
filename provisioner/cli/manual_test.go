package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// The user manual's commands do not rot (make docs-check, part of make
// lint): every racker command in docs/manual exists with the flags it
// shows (run with --help, which parses them), and the commands of blocks
// fenced as "sh run" run against the example rack, in order, one fresh
// state folder per page, exiting 0 or with the status a "# exit N"
// comment names. Every command users see is mentioned somewhere.

// manualCommand is one racker command line of the manual.
type manualCommand struct {
	file string
	line int
	args []string
	run  bool
	exit int
}

func TestManualCommands(t *testing.T) {
	pages, err := filepath.Glob("../../docs/manual/*.md")
	if err != nil || len(pages) < 7 {
		t.Fatalf("the manual's pages: %v %v", pages, err)
	}
	mentioned := map[string]bool{}
	total, ran := 0, 0
	for _, page := range pages {
		cmds := manualCommands(t, page)
		oem, state := exampleRack(t)
		env := map[string]string{"RACKER_OEM_DIR": oem, "RACKER_STATE_DIR": state, "RACKER_MGMT_MAC": "00:11:22:33:44:00",
			"RACKER_INSTALL_DIR": filepath.Join(state, "..", "install")}
		for _, c := range cmds {
			total++
			where := fmt.Sprintf("%s:%d: racker %s", filepath.Base(c.file), c.line, strings.Join(c.args, " "))
			mentioned[commandName(c.args)] = true
			args := c.args
			want := c.exit
			if !c.run {
				args, want = append(append([]string{}, args...), "--help"), 0
			} else {
				ran++
			}
			var out, errb strings.Builder
			e := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] },
				IsTerminal: func() bool { return false }}
			if code := e.Run(t.Context(), args); code != want {
				t.Errorf("%s: exit %d, want %d\n%s%s", where, code, want, out.String(), errb.String())
			}
		}
	}
	// Every command a user sees (not the build side, not cobra's help).
	root := NewRoot(&Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard})
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if !sub.IsAvailableCommand() {
				continue // hidden: the build side (racker release)
			}
			if sub.HasSubCommands() {
				walk(sub)
				continue
			}
			name := strings.TrimPrefix(sub.CommandPath(), "racker ")
			if !mentioned[name] {
				t.Errorf("the manual never shows racker %s", name)
			}
		}
	}
	walk(root)
	t.Logf("%d racker commands in the manual, %d run against the example rack", total, ran)
	if ran < 20 {
		t.Errorf("only %d commands run", ran)
	}
}

// commandName is the command path of args ("factory check"), without
// flags and operands.
func commandName(args []string) string {
	root := NewRoot(&Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard})
	c, _, err := root.Find(args)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(c.CommandPath(), "racker ")
}

var exitComment = regexp.MustCompile(`#\s*exit\s+(\d+)\s*$`)

// manualCommands reads the racker command lines of a page's sh blocks.
func manualCommands(t *testing.T, page string) []manualCommand {
	t.Helper()
	f, err := os.Open(page)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []manualCommand
	in, run := false, false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "```") {
			info := strings.Fields(strings.TrimPrefix(line, "```"))
			if in {
				in = false
				continue
			}
			in = true
			run = len(info) == 2 && info[0] == "sh" && info[1] == "run"
			if len(info) == 0 || info[0] != "sh" {
				in = false // not a shell block: skip to its end
				for sc.Scan() {
					n++
					if strings.HasPrefix(strings.TrimSpace(sc.Text()), "```") {
						break
					}
				}
			}
			continue
		}
		if !in || !strings.HasPrefix(line, "racker ") {
			continue
		}
		c := manualCommand{file: page, line: n, run: run}
		if m := exitComment.FindStringSubmatch(line); m != nil {
			c.exit, _ = strconv.Atoi(m[1])
		}
		words, err := shellWords(line)
		if err != nil {
			t.Errorf("%s:%d: %v", page, n, err)
			continue
		}
		c.args = words[1:]
		out = append(out, c)
	}
	return out
}

// shellWords splits one command line as sh would, as far as the manual
// needs: quotes, and the line ends at a comment, a pipe or a redirection.
func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	have, quote := false, rune(0)
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, have = r, true
		case r == ' ' || r == '\t':
			if have {
				words = append(words, cur.String())
				cur.Reset()
				have = false
			}
		case r == '#' && !have, r == '|', r == '>', r == '<', r == ';', r == '&':
			if have {
				words = append(words, cur.String())
			}
			return words, nil
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if have {
		words = append(words, cur.String())
	}
	return words, nil
}
