package tftp

import (
	"io"
	"net"
	"reflect"
	"unsafe"
)

// pinRequest is what pin/tftp v3.1.0 parsed from a read request but does not
// export: the client's options, the transfer mode, the block-size ceiling it
// worked out from the receiving interface's MTU, and the ephemeral socket it
// opened (bound to the address the request came in on) for this transfer.
type pinRequest struct {
	opts        map[string]string
	mode        string
	maxBlockLen int
	conn        *net.UDPConn
}

// peekPinRequest reads pinRequest out of pin/tftp's sender by reflection.
// Why: pin/tftp owns the listening socket and its request loop, and it
// silently drops the RFC 7440 windowsize option; the read handler is the only
// place we see a request before pin answers it, and these fields are the only
// way to learn that a client asked for a window. Reading them here keeps every
// other request on pin/tftp's tried path (iPXE, PXE ROMs, busybox) untouched.
// If a pin/tftp upgrade renames or retypes any field, ok is false and the
// request simply goes through pin/tftp without a window; the windowsize tests
// then fail, so the upgrade cannot go unnoticed.
func peekPinRequest(rf io.ReaderFrom) (req pinRequest, ok bool) {
	v := reflect.ValueOf(rf)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return req, false
	}
	s := v.Elem()
	opts, mode, mbl, conn := s.FieldByName("opts"), s.FieldByName("mode"), s.FieldByName("maxBlockLen"), s.FieldByName("conn")
	if !opts.IsValid() || opts.Kind() != reflect.Map || opts.Type().Key().Kind() != reflect.String || opts.Type().Elem().Kind() != reflect.String ||
		!mode.IsValid() || mode.Kind() != reflect.String || !mbl.IsValid() || mbl.Kind() != reflect.Int ||
		!conn.IsValid() || conn.Kind() != reflect.Interface || conn.IsNil() {
		return req, false
	}
	cc := conn.Elem() // *connConnection
	if cc.Kind() != reflect.Pointer || cc.IsNil() || cc.Elem().Kind() != reflect.Struct {
		return req, false
	}
	udp := cc.Elem().FieldByName("conn")
	if !udp.IsValid() || udp.Type() != reflect.TypeOf((*net.UDPConn)(nil)) || udp.IsNil() {
		return req, false
	}
	req.conn = reflect.NewAt(udp.Type(), unsafe.Pointer(udp.UnsafeAddr())).Elem().Interface().(*net.UDPConn)
	req.opts = make(map[string]string, opts.Len())
	for it := opts.MapRange(); it.Next(); {
		req.opts[it.Key().String()] = it.Value().String()
	}
	req.mode = mode.String()
	req.maxBlockLen = int(mbl.Int())
	return req, true
}
