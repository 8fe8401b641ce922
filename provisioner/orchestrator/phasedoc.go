package orchestrator

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// opDocs say what each operation does, for the documentation.
var opDocs = map[opKind]string{
	opDiag:      "diag (the BMC's power state)",
	opReinstall: "reinstall (a new install generation at the boot services; wipe-all after reprovision)",
	opPXE:       "pxe (power off if on, boot device PXE next boot only, power on)",
	opDiskBoot:  "disk-boot (boot device disk, persistent)",
	opPowerOff:  "power-off",
}

// WritePhaseTable prints the machine as Markdown: the phases, then for
// each phase what every input does, then the failure policy and the
// inputs. docs/phases.md is this output (go generate; make lint checks
// that it is current), so the picture cannot drift from the code.
func WritePhaseTable(w io.Writer) error {
	b := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(b, format+"\n", a...) }
	p("# Provisioning phases")
	p("")
	p("<!-- Generated from provisioner/orchestrator/table.go by `go generate ./provisioner/orchestrator`; do not edit. -->")
	p("")
	p("Every node of a `racker bootstrap` or `racker reprovision` run is in exactly one phase,")
	p("persisted in `provision.json` and its journal and shown by `racker status`. The orchestrator moves it")
	p("by one table, printed here: an input a phase does not list changes nothing (the event")
	p("is still recorded as the node's last). Each phase that holds a `--parallel` slot has")
	p("a timeout, counted from entering it; a phase's operation is started (and, after an")
	p("error or a crash, started again) while the node is in it. The timeouts are the")
	p("orchestrator's `Timeouts` (racker bootstrap's `--bmc-timeout`, `--netboot-timeout`,")
	p("`--install-start-timeout`, `--install-timeout`, `--boot-timeout`; defaults shown).")
	p("")
	p("| phase | meaning | slot | operation | timeout |")
	p("|---|---|---|---|---|")
	for _, ph := range phaseList {
		info := phases[ph]
		slot, limit := "", ""
		if info.slot {
			slot = "yes"
			limit = fmt.Sprintf("%s (%s)", info.limit, DefaultTimeouts.limit(ph))
		}
		p("| `%s` | %s | %s | %s | %s |", ph, info.doc, slot, opDocs[info.op], limit)
	}
	p("")
	p("## What each input does, phase by phase")
	for _, ph := range phaseList {
		p("")
		p("### `%s`", ph)
		p("")
		p("| input | when | next phase | effect |")
		p("|---|---|---|---|")
		for _, in := range inputs {
			for _, r := range rulesFor(ph, in.in) {
				when := "always"
				if r.when != nil {
					when = r.when.name
				} else if len(rulesFor(ph, in.in)) > 1 {
					when = "otherwise"
				}
				to := "stays"
				switch r.to {
				case "":
				case byPolicy:
					to = "failure policy"
				default:
					to = "`" + string(r.to) + "`"
				}
				var effect []string
				if r.do != nil {
					effect = append(effect, r.do.name)
				}
				if r.why != "" && r.to == byPolicy {
					effect = append(effect, "reason: "+r.why)
				}
				p("| %s | %s | %s | %s |", in.in, when, to, strings.Join(effect, "; "))
			}
		}
	}
	p("")
	p("## Failures")
	p("")
	p("A failure (a timeout, a failed callback, a netboot that went wrong) counts against the")
	p("node and the failure policy (`--on-failure`, `--retries`) picks the next phase:")
	p("")
	p("| policy | next phase |")
	p("|---|---|")
	p("| retry, with retries left | `%s`: the node keeps its slot, a reinstall is ordered, the BMC is checked again after the backoff |", BMCCheck)
	p("| exclude; retry once the retries are spent | `%s`: powered off and left out |", Excluding)
	p("| ask | `%s`: a person answers retry, exclude or cancel (exclude when no one can be asked) |", Failed)
	p("| cancel | `%s`, and the run ends |", Failed)
	p("")
	p("## Inputs")
	p("")
	p("| input | what happened |")
	p("|---|---|")
	for _, in := range inputs {
		p("| %s | %s |", in.in, in.doc)
	}
	return b.Flush()
}
