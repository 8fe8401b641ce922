package bmc

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// xmlNode is a generic XML element. The libvirt driver edits domain XML
// through it instead of typed structs, so every element and attribute it
// does not know survives a redefine unchanged. Prefixes are kept as
// written (RawToken), so namespaced metadata round-trips too.
type xmlNode struct {
	Name     string // with its prefix, e.g. "racker:boot"
	Attrs    []xml.Attr
	Children []any // *xmlNode or string (character data)
}

func parseXMLTree(doc string) (*xmlNode, error) {
	d := xml.NewDecoder(strings.NewReader(doc))
	var stack []*xmlNode
	var root *xmlNode
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parsing domain XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &xmlNode{Name: qname(t.Name), Attrs: append([]xml.Attr(nil), t.Attr...)}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, n)
			} else if root == nil {
				root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, fmt.Errorf("parsing domain XML: unbalanced </%s>", qname(t.Name))
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, string(t))
			}
		}
	}
	if root == nil {
		return nil, fmt.Errorf("parsing domain XML: no root element")
	}
	return root, nil
}

func qname(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}

func (n *xmlNode) String() string {
	var b bytes.Buffer
	n.write(&b)
	return b.String()
}

func (n *xmlNode) write(b *bytes.Buffer) {
	b.WriteString("<" + n.Name)
	for _, a := range n.Attrs {
		b.WriteString(" " + qname(a.Name) + "='")
		xml.EscapeText(b, []byte(a.Value))
		b.WriteString("'")
	}
	if len(n.Children) == 0 {
		b.WriteString("/>")
		return
	}
	b.WriteString(">")
	for _, c := range n.Children {
		switch c := c.(type) {
		case *xmlNode:
			c.write(b)
		case string:
			xml.EscapeText(b, []byte(c))
		}
	}
	b.WriteString("</" + n.Name + ">")
}

// child returns the first child element called name, or nil.
func (n *xmlNode) child(name string) *xmlNode {
	for _, c := range n.Children {
		if e, ok := c.(*xmlNode); ok && e.Name == name {
			return e
		}
	}
	return nil
}

// elements returns the child elements called name.
func (n *xmlNode) elements(name string) []*xmlNode {
	var out []*xmlNode
	for _, c := range n.Children {
		if e, ok := c.(*xmlNode); ok && e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func (n *xmlNode) attr(name string) string {
	for _, a := range n.Attrs {
		if qname(a.Name) == name {
			return a.Value
		}
	}
	return ""
}

func (n *xmlNode) setAttr(name, value string) {
	for i, a := range n.Attrs {
		if qname(a.Name) == name {
			n.Attrs[i].Value = value
			return
		}
	}
	n.Attrs = append(n.Attrs, xml.Attr{Name: xml.Name{Local: name}, Value: value})
}

// removeChildren drops the child elements called name.
func (n *xmlNode) removeChildren(name string) {
	kept := n.Children[:0]
	for _, c := range n.Children {
		if e, ok := c.(*xmlNode); ok && e.Name == name {
			continue
		}
		kept = append(kept, c)
	}
	n.Children = kept
}

// ensure returns the child called name, adding it when missing.
func (n *xmlNode) ensure(name string) *xmlNode {
	if c := n.child(name); c != nil {
		return c
	}
	c := &xmlNode{Name: name}
	n.Children = append(n.Children, c)
	return c
}

// textOf returns an element's character data.
func textOf(n *xmlNode) string {
	var b strings.Builder
	for _, c := range n.Children {
		if s, ok := c.(string); ok {
			b.WriteString(s)
		}
	}
	return b.String()
}
