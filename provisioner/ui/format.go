package ui

import (
	"strconv"
	"strings"
	"time"
)

// How the page words a node's fields; app.js words them the same way, so
// a live update reads like the first paint.

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// phaseClass names the colour of a unit (the CSS class p-PHASE).
func phaseClass(u Unit) string {
	switch {
	case u.Management:
		return "management"
	case u.Phase == "":
		return "pending"
	}
	return string(u.Phase)
}

func phaseText(u Unit) string {
	if u.Management {
		return "management node"
	}
	return phaseClass(u)
}

func roleType(u Unit) string {
	var parts []string
	for _, s := range []string{u.Role, u.Type} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " · ")
}

func bmcText(b *bool) string {
	switch {
	case b == nil:
		return "BMC ?"
	case *b:
		return "BMC ok"
	}
	return "BMC no answer"
}

func osText(os string) string {
	if os == "" {
		return "no OS yet"
	}
	return os
}

// note is what a node shows besides its phase: why it failed or was left
// out, or what its retries fail on (as racker status's NOTE column).
func note(u Unit) string {
	switch {
	case u.Reason != "":
		return u.Reason
	case u.LastError != "" && !u.Phase.Terminal():
		return "retrying: " + u.LastError
	}
	return ""
}

// age is the time since t, in whole seconds ("" for no time).
func age(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := max(now.Sub(t), 0).Truncate(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return strconv.Itoa(h) + "h" + strconv.Itoa(m) + "m" + strconv.Itoa(s) + "s"
	case m > 0:
		return strconv.Itoa(m) + "m" + strconv.Itoa(s) + "s"
	}
	return strconv.Itoa(s) + "s"
}

// clock is a time of day, UTC, for a page without JavaScript.
func clock(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("15:04:05")
}

// stamp is a time for app.js (RFC 3339), "" for none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// unitID is the element id of a node's unit.
func unitID(mac string) string { return "u-" + strings.ReplaceAll(mac, ":", "") }

// row numbers nodes.csv's machines from 1; "-" for one it no longer has.
func row(i int) string {
	if i < 0 {
		return "-"
	}
	return strconv.Itoa(i + 1)
}

// unitView is a machine as the page prints it, every field worded once
// here (formatting in the template would cost reflection per field: a
// 126-machine page renders in a fraction of the time this way).
type unitView struct {
	ID, MAC, Class, Since, U                         string
	Hostname, Role, Phase, Age, BMC, Power, Boot, OS string
	Gen, Row, Type, IP, LastEvent, Note, TableClass  string
	BMCBad                                           bool
	Blank                                            bool // an empty rack unit
	// The plain table's cells: the bare values, as racker status prints them.
	Cells []string
}

func viewUnit(u Unit, now time.Time) unitView {
	v := unitView{ID: unitID(u.PrimaryMAC), MAC: u.PrimaryMAC, Since: stamp(u.PhaseSince), Hostname: dash(u.Hostname),
		Role: roleType(u), Phase: phaseText(u), Age: age(now, u.PhaseSince), BMC: bmcText(u.BMCReachable),
		Power: "power " + dash(u.Power), Boot: "boot " + dash(u.BootDevice), OS: osText(u.OS),
		Gen: strconv.Itoa(u.InstallGeneration), Row: row(u.Row), Type: dash(u.Type), IP: dash(u.IP),
		LastEvent: dash(u.LastEvent), Note: note(u), BMCBad: u.BMCReachable != nil && !*u.BMCReachable}
	v.TableClass = "p-" + phaseClass(u)
	v.Class = "unit " + v.TableClass
	bmc := strings.TrimPrefix(v.BMC, "BMC ")
	if u.Management {
		// Its BMC is on the public network and Racker does not drive it.
		v.Class += " mgmt"
		v.BMC, v.Power, bmc = "IP "+dash(u.IP), "runs racker serve", "-"
	}
	if v.Note != "" {
		v.Class += " warn"
	}
	v.Cells = []string{v.Row, v.MAC, dash(u.Role), v.Type, v.Phase, v.Age, bmc, dash(u.Power), dash(u.BootDevice), dash(u.OS), v.Gen, v.IP, v.LastEvent, dash(v.Note)}
	return v
}

func viewUnits(r Rack) []unitView {
	out := make([]unitView, len(r.Units))
	for i, u := range r.Units {
		out[i] = viewUnit(u, r.Now)
	}
	return out
}

// Layout of the drawing: 42-unit cabinets side by side, a small rack in
// one shorter cabinet, filled from the top (app.js draws the same when
// the plan changes).
const (
	perCabinet = 42
	minUnits   = 12
)

func cabinets(units []unitView) [][]unitView {
	n := len(units)
	cabs := max(1, (n+perCabinet-1)/perCabinet)
	height := perCabinet
	if cabs == 1 {
		height = max(n, minUnits)
	}
	out := make([][]unitView, cabs)
	for c := range out {
		for i := 0; i < height; i++ {
			v := unitView{Blank: true}
			if k := c*perCabinet + i; k < n {
				v = units[k]
			}
			v.U = strconv.Itoa(height - i)
			out[c] = append(out[c], v)
		}
	}
	return out
}
