package vbmc

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// withBootOrder rewrites a libvirt domain XML so the firmware tries first the
// device the boot flags chose: per-device <boot order='N'/> on the primary
// interface and on every disk (in disk order, as a server's firmware lists
// its disks: a UEFI firmware passes over a disk with nothing to boot, a
// legacy BIOS boots the first disk or none), numbered in preference order;
// every other
// <boot> element (per-device or <os><boot dev=…/>) is removed, because libvirt
// refuses the two styles mixed and a stale order would win otherwise.
//
// The XML is edited in place by byte offsets, never re-encoded, so elements
// and namespaces this code knows nothing about survive untouched. primaryMAC
// picks the interface (case-insensitive); empty means the first interface.
func withBootOrder(domainXML string, first BootDevice, primaryMAC string) (string, error) {
	type edit struct {
		start, end int // bytes [start,end) are replaced by text
		text       string
	}
	var (
		edits            []edit
		stack            []string
		nicAt            = -1 // insertion offsets (just after the start tag)
		diskAts          []int
		curNicAt         = -1
		curNicMAC        string
		firstNicAt       = -1
		bootStart        = -1
		wantMAC          = strings.ToLower(strings.TrimSpace(primaryMAC))
		underDevicesElem = func(name string) bool {
			return len(stack) == 3 && stack[1] == "devices" && stack[2] == name
		}
	)
	dec := xml.NewDecoder(strings.NewReader(domainXML))
	for {
		start := int(dec.InputOffset())
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("while parsing the domain XML for its boot order: %w", err)
		}
		end := int(dec.InputOffset())
		switch t := tok.(type) {
		case xml.StartElement:
			stack = append(stack, t.Name.Local)
			switch {
			case t.Name.Local == "boot" && len(stack) >= 3 && (stack[1] == "devices" || stack[1] == "os"):
				bootStart = start
			case underDevicesElem("interface"):
				if strings.HasSuffix(domainXML[start:end], "/>") {
					return "", fmt.Errorf("interface element without children in the domain XML")
				}
				curNicAt, curNicMAC = end, ""
				if firstNicAt < 0 {
					firstNicAt = end
				}
			case underDevicesElem("disk"):
				if attr(t, "device") == "" || attr(t, "device") == "disk" {
					if strings.HasSuffix(domainXML[start:end], "/>") {
						return "", fmt.Errorf("disk element without children in the domain XML")
					}
					diskAts = append(diskAts, end)
				}
			case t.Name.Local == "mac" && len(stack) == 4 && stack[2] == "interface":
				curNicMAC = strings.ToLower(attr(t, "address"))
			}
		case xml.EndElement:
			if t.Name.Local == "boot" && bootStart >= 0 {
				edits = append(edits, edit{start: bootStart, end: end})
				bootStart = -1
			}
			if underDevicesElem("interface") && curNicAt >= 0 {
				if wantMAC != "" && curNicMAC == wantMAC && nicAt < 0 {
					nicAt = curNicAt
				}
				curNicAt = -1
			}
			stack = stack[:len(stack)-1]
		}
	}
	if wantMAC == "" {
		nicAt = firstNicAt
	} else if nicAt < 0 {
		return "", fmt.Errorf("no interface with MAC %s in the domain XML", primaryMAC)
	}

	// Preference order: the chosen device, then the other one; by default a
	// server tries its disks before the network.
	order := append(append([]int{}, diskAts...), nicAt)
	if first == BootPXE {
		order = append([]int{nicAt}, diskAts...)
	}
	n := 0
	for _, at := range order {
		if at < 0 {
			continue
		}
		n++
		edits = append(edits, edit{start: at, end: at, text: fmt.Sprintf("<boot order='%d'/>", n)})
	}
	if n == 0 {
		return "", fmt.Errorf("the domain has neither an interface nor a disk to boot from")
	}

	// At one offset, an insertion goes before a removal that starts there
	// (a new <boot> right where an old one is being dropped).
	sort.SliceStable(edits, func(i, j int) bool {
		if edits[i].start != edits[j].start {
			return edits[i].start < edits[j].start
		}
		return edits[i].end < edits[j].end
	})
	var out strings.Builder
	pos := 0
	for _, e := range edits {
		out.WriteString(domainXML[pos:e.start])
		out.WriteString(e.text)
		pos = e.end
	}
	out.WriteString(domainXML[pos:])
	return out.String(), nil
}

func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// bootOrderOf reads back which device has boot order 1 ("interface", "disk"
// or ""), for status and tests.
func bootOrderOf(domainXML string) (string, error) {
	var dom struct {
		Interfaces []struct {
			Boot *struct {
				Order int `xml:"order,attr"`
			} `xml:"boot"`
		} `xml:"devices>interface"`
		Disks []struct {
			Boot *struct {
				Order int `xml:"order,attr"`
			} `xml:"boot"`
		} `xml:"devices>disk"`
	}
	if err := xml.Unmarshal([]byte(domainXML), &dom); err != nil {
		return "", fmt.Errorf("while reading the boot order from the domain XML: %w", err)
	}
	for _, i := range dom.Interfaces {
		if i.Boot != nil && i.Boot.Order == 1 {
			return "interface", nil
		}
	}
	for _, d := range dom.Disks {
		if d.Boot != nil && d.Boot.Order == 1 {
			return "disk", nil
		}
	}
	return "", nil
}
