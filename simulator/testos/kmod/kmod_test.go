package kmod

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeModule writes a minimal relocatable ELF whose .modinfo holds modinfo:
// all that Depends reads from a real module (a unit-test stand-in for .ko files).
func writeModule(t *testing.T, path, modinfo string) {
	t.Helper()
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	info := []byte(modinfo)
	var body bytes.Buffer
	hdrSize := binary.Size(elf.Header64{})
	infoOff := uint64(hdrSize)
	strOff := infoOff + uint64(len(info))
	shOff := strOff + uint64(len(shstr))
	shOff += (8 - shOff%8) % 8
	h := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: uint16(hdrSize), Shentsize: uint16(binary.Size(elf.Section64{})), Shnum: 3, Shstrndx: 2,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.Write(&body, binary.LittleEndian, h)
	body.Write(info)
	body.Write(shstr)
	body.Write(make([]byte, int(shOff)-body.Len()))
	for _, s := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Off: infoOff, Size: uint64(len(info)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr)), Addralign: 1},
	} {
		binary.Write(&body, binary.LittleEndian, s)
	}
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, body.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrderFollowsDepends(t *testing.T) {
	dir := t.TempDir()
	writeModule(t, filepath.Join(dir, "kernel/drivers/virtio/virtio.ko"), "license=GPL\x00depends=\x00name=virtio\x00")
	writeModule(t, filepath.Join(dir, "kernel/drivers/virtio/virtio_ring.ko"), "depends=\x00")
	writeModule(t, filepath.Join(dir, "kernel/drivers/virtio/virtio_pci.ko"), "depends=virtio_ring,virtio\x00")
	writeModule(t, filepath.Join(dir, "kernel/drivers/net/virtio_net.ko"), "depends=virtio_ring,virtio,net_failover\x00")
	writeModule(t, filepath.Join(dir, "kernel/drivers/net/net_failover.ko"), "depends=failover\x00")
	writeModule(t, filepath.Join(dir, "kernel/net/core/failover.ko"), "depends=\x00")
	writeModule(t, filepath.Join(dir, "kernel/fs/nls/nls_iso8859-1.ko"), "depends=\x00")
	writeModule(t, filepath.Join(dir, "kernel/x/a.ko"), "depends=b\x00")
	writeModule(t, filepath.Join(dir, "kernel/x/b.ko"), "depends=a\x00")
	writeModule(t, filepath.Join(dir, "kernel/x/c.ko"), "depends=nothere\x00")

	idx, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	order, err := LoadOrder(dir, idx, []string{"virtio_pci", "virtio_net", "nls_iso8859-1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_pci.ko",
		"kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko",
		"kernel/fs/nls/nls_iso8859-1.ko",
	}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("order\n%q\nwant\n%q", order, want)
	}
	if _, err := LoadOrder(dir, idx, []string{"a"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: %v", err)
	}
	if _, err := LoadOrder(dir, idx, []string{"c"}); err == nil || !strings.Contains(err.Error(), "nothere not found") {
		t.Errorf("missing dependency: %v", err)
	}
}
