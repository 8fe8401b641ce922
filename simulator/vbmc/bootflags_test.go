package vbmc

import (
	"bytes"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/types"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func mustSet(t *testing.T, b *bootOptions, param byte, data []byte, now time.Time) {
	t.Helper()
	if cc := b.set(param, data, now); cc != types.CodeOK {
		t.Fatalf("set param %d %x: completion code %v", param, data, cc)
	}
}

func flagsOf(t *testing.T, b *bootOptions, now time.Time) []byte {
	t.Helper()
	d, cc := b.get(paramBootFlags, now)
	if cc != types.CodeOK {
		t.Fatalf("get param 5: %v", cc)
	}
	if d[0] != 0x01 || d[1] != paramBootFlags {
		t.Fatalf("get param 5 header = %x, want 01 05", d[:2])
	}
	return d[2:]
}

func TestBootFlagsReadBackByteExact(t *testing.T) {
	for _, data := range [][]byte{
		{0xe0, 0x04, 0x00, 0x00, 0x00}, // pxe, persistent, efi (ipmitool options=persistent,efiboot)
		{0x80, 0x08, 0x00, 0x00, 0x00}, // disk, next boot
		{0xa0, 0x3c, 0x12, 0x34, 0x1f}, // odd bits must survive too
	} {
		var b bootOptions
		mustSet(t, &b, paramValidBitClear, []byte{dontClearOnTimeout}, t0)
		mustSet(t, &b, paramBootFlags, data, t0)
		if got := flagsOf(t, &b, t0); !bytes.Equal(got, data) {
			t.Errorf("read back %x, want %x", got, data)
		}
	}
}

func TestBootFlagsDeviceAndConsumption(t *testing.T) {
	var b bootOptions
	if d := b.next(t0); d != BootDefault {
		t.Fatalf("fresh BMC boots %v, want default", d)
	}
	mustSet(t, &b, paramBootFlags, []byte{0x80, 0x04, 0, 0, 0}, t0) // pxe, next boot only
	b.noteChassisControl()
	if d := b.next(t0); d != BootPXE {
		t.Fatalf("next = %v, want pxe", d)
	}
	b.booted(t0)
	if d := b.next(t0); d != BootDefault {
		t.Fatalf("after one boot next = %v, want default (next-boot-only used up)", d)
	}
	if got := flagsOf(t, &b, t0); !bytes.Equal(got, []byte{0x00, 0x04, 0, 0, 0}) {
		t.Fatalf("after one boot flags = %x, want valid bit cleared only", got)
	}

	mustSet(t, &b, paramBootFlags, []byte{0xc0, 0x08, 0, 0, 0}, t0) // disk, persistent
	b.noteChassisControl()
	for i := 0; i < 3; i++ {
		if d := b.next(t0); d != BootDisk {
			t.Fatalf("boot %d: next = %v, want disk (persistent)", i, d)
		}
		b.booted(t0)
	}
}

func TestBootFlagsSixtySecondRule(t *testing.T) {
	pxe := []byte{0x80, 0x04, 0, 0, 0}
	t.Run("cleared without chassis control", func(t *testing.T) {
		var b bootOptions
		mustSet(t, &b, paramBootFlags, pxe, t0)
		if d := b.next(t0.Add(59 * time.Second)); d != BootPXE {
			t.Fatalf("at 59 s next = %v, want pxe", d)
		}
		if got := flagsOf(t, &b, t0.Add(61*time.Second)); got[0]&flagValid != 0 {
			t.Fatalf("at 61 s flags = %x, want valid bit cleared", got)
		}
	})
	t.Run("kept after a chassis control", func(t *testing.T) {
		var b bootOptions
		mustSet(t, &b, paramBootFlags, pxe, t0)
		b.noteChassisControl()
		if d := b.next(t0.Add(10 * time.Minute)); d != BootPXE {
			t.Fatalf("next = %v, want pxe", d)
		}
	})
	t.Run("kept when parameter 3 says so", func(t *testing.T) {
		var b bootOptions
		mustSet(t, &b, paramValidBitClear, []byte{dontClearOnTimeout}, t0)
		mustSet(t, &b, paramBootFlags, pxe, t0)
		if d := b.next(t0.Add(10 * time.Minute)); d != BootPXE {
			t.Fatalf("next = %v, want pxe", d)
		}
		d, _ := b.get(paramValidBitClear, t0)
		if !bytes.Equal(d, []byte{0x01, 0x03, 0x08}) {
			t.Fatalf("param 3 read back %x", d)
		}
	})
	t.Run("a new write restarts the timer", func(t *testing.T) {
		var b bootOptions
		mustSet(t, &b, paramBootFlags, pxe, t0)
		b.noteChassisControl()
		mustSet(t, &b, paramBootFlags, pxe, t0.Add(time.Hour))
		if d := b.next(t0.Add(time.Hour + 61*time.Second)); d != BootDefault {
			t.Fatalf("next = %v, want default: the second write had no chassis control", d)
		}
	})
}

func TestBootOptionsRejectsBadRequests(t *testing.T) {
	var b bootOptions
	for _, tc := range []struct {
		param byte
		data  []byte
		want  types.CompletionCode
	}{
		{paramBootFlags, []byte{0x80, 0x04}, types.CodeRequestDataLengthInvalid},
		{paramValidBitClear, nil, types.CodeRequestDataLengthInvalid},
		{0x07, []byte{0x00}, types.CodeParameterNotSupported},
		{paramSetInProgress, []byte{0x03}, types.CodeParameterOutOfRange},
	} {
		if cc := b.set(tc.param, tc.data, t0); cc != tc.want {
			t.Errorf("set %d %x = %v, want %v", tc.param, tc.data, cc, tc.want)
		}
	}
	if _, cc := b.get(0x07, t0); cc != types.CodeParameterNotSupported {
		t.Errorf("get 7 = %v, want parameter not supported", cc)
	}
}

func TestBootInfoAcknowledgeMask(t *testing.T) {
	var b bootOptions
	mustSet(t, &b, paramBootInfoAck, []byte{0x01, 0x01}, t0)
	mustSet(t, &b, paramBootInfoAck, []byte{0x02, 0xff}, t0) // only bit 1 written
	d, _ := b.get(paramBootInfoAck, t0)
	if d[3] != 0x03 {
		t.Fatalf("ack = %#x, want 0x03", d[3])
	}
}
