package bmc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

// solStream relays an active SOL payload (IPMI v2.0 §15): the BMC's
// console output to out, keystrokes from in, and a serial BREAK on request.
// go-ipmi's Client.SOLStream relays bytes only; a BREAK is a bit of the
// packet's operation byte (Table 15-2, bit 4), so Racker keeps its own
// loop over Client.SOLPayload, with the same rules:
//
//   - every packet Racker sends carries a new sequence number (1…15,
//     wrapping to 1), so the BMC acts on it once;
//   - output is acknowledged (sequence and accepted count) in the next
//     packet, and a BMC resends what was not acknowledged, so output a
//     lost packet carried comes again; a resend is written only past what
//     was written before;
//   - an empty packet every poll interval asks for output (and keeps the
//     session alive), as consoles that poll do;
//   - keystrokes the BMC did not accept are sent again, a few times.
type solStream struct {
	cl   *client.Client
	out  io.Writer
	poll time.Duration
	// chunk bounds the keystrokes per packet (the BMC's inbound payload
	// size less the SOL header).
	chunk int

	local      uint8 // sequence number of the next packet
	remote     uint8 // sequence number of the BMC's last output packet
	remoteLen  int   // its bytes written
	ackPending bool
}

// Bits of the SOL operation byte, console to BMC (Table 15-2) and BMC to
// console (Table 15-3).
const (
	solGenerateBreak = 1 << 4
	solDeactivating  = 1 << 4
	solMaxSeq        = 15
)

// solBreakReq asks the stream for a BREAK; done gets the outcome.
type solBreakReq struct{ done chan error }

func newSOLStream(cl *client.Client, out io.Writer, inboundSize uint16) *solStream {
	chunk := int(inboundSize) - 4
	if chunk < 16 || chunk > 255 {
		chunk = 64
	}
	return &solStream{cl: cl, out: out, poll: 50 * time.Millisecond, chunk: chunk, local: 1}
}

// run relays until ctx ends (nil), in closes (nil) or the session fails.
func (s *solStream) run(ctx context.Context, in <-chan []byte, brk <-chan solBreakReq) error {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	if err := s.send(ctx, nil, 0); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case data, ok := <-in:
			if !ok {
				return nil
			}
			if err := s.send(ctx, data, 0); err != nil {
				return err
			}
		case req := <-brk:
			err := s.send(ctx, nil, solGenerateBreak)
			req.done <- err
			if err != nil {
				return err
			}
		case <-t.C:
			if err := s.send(ctx, nil, 0); err != nil {
				return err
			}
		}
	}
}

// send sends data (in packets of chunk bytes) or, with no data, one empty
// packet carrying op; then acknowledges the output that came back.
func (s *solStream) send(ctx context.Context, data []byte, op uint8) error {
	for first := true; first || len(data) > 0; first = false {
		part := data[:min(len(data), s.chunk)]
		refused := 0
		for {
			res, err := s.exchange(ctx, part, op)
			if err != nil {
				return err
			}
			op = 0 // a BREAK goes once
			accepted := min(int(res.AcceptedCharacterCount), len(part))
			part = part[accepted:]
			data = data[accepted:]
			if len(part) == 0 {
				break
			}
			if accepted == 0 {
				if refused++; refused > 3 {
					return fmt.Errorf("the BMC did not accept %d keystroke(s) after %d tries", len(part), refused)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}
	return s.acknowledge(ctx)
}

// acknowledge sends empty packets while output is unacknowledged (each
// response may carry more); a BMC that repeats itself is given up on
// after a few rounds, as its next poll will carry the rest.
func (s *solStream) acknowledge(ctx context.Context) error {
	for round := 0; s.ackPending && round < 8; round++ {
		if _, err := s.exchange(ctx, nil, 0); err != nil {
			return err
		}
	}
	return nil
}

// exchange sends one packet, with the pending acknowledgement, and takes
// the output of the response.
func (s *solStream) exchange(ctx context.Context, data []byte, op uint8) (*types.SOLPayloadResponse, error) {
	req := &types.SOLPayloadRequest{SOLPayloadPacket: types.SOLPayloadPacket{
		SequenceNumber: s.local, ControlByte: op, CharacterData: data,
	}}
	if s.remote != 0 {
		req.AckedSequenceNumber, req.AcceptedCharacterCount = s.remote, uint8(s.remoteLen)
	}
	res, err := s.cl.SOLPayload(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("SOL packet: %w", err)
	}
	s.local = s.local%solMaxSeq + 1
	s.ackPending = false
	return res, s.output(res)
}

// errDeactivated: the BMC ended the payload (another session deactivated
// it, e.g. racker console --force elsewhere, or the BMC reset).
var errDeactivated = errors.New("the BMC deactivated the serial console (another session took it over?)")

func (s *solStream) output(res *types.SOLPayloadResponse) error {
	if res.ControlByte&solDeactivating != 0 {
		return errDeactivated
	}
	seq := res.SequenceNumber & 0x0f
	if seq == 0 {
		return nil // an acknowledgement only
	}
	data := res.CharacterData
	if seq == s.remote {
		// A resend of the last packet, perhaps longer: write what is new.
		if len(data) <= s.remoteLen {
			s.ackPending = true
			return nil
		}
		data = data[s.remoteLen:]
		s.remoteLen = len(res.CharacterData)
	} else {
		s.remote, s.remoteLen = seq, len(data)
	}
	s.ackPending = true
	if len(data) == 0 {
		return nil
	}
	if _, err := s.out.Write(data); err != nil {
		return fmt.Errorf("writing console output: %w", err)
	}
	return nil
}
