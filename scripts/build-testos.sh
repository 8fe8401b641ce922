#!/usr/bin/env bash
# Builds the simulator's test OS as a Flatcar-style release folder
# (docs/boot-contract.md §2):
#
#   OUT/current/flatcar_production_pxe.vmlinuz        Debian's cloud kernel
#   OUT/current/flatcar_production_pxe_image.cpio.gz  Go init + busybox + modules
#   OUT/current/flatcar_production_image.bin.bz2      raw disk: MBR + one FAT
#                                                     partition, syslinux for
#                                                     SeaBIOS and UEFI
#
# Usage: scripts/build-testos.sh [OUT]   (default bin/testos; GO=go)
# Idempotent: downloads are cached in OUT/cache, and nothing is rebuilt when
# the inputs (kernel package, init and initramfs builder binaries, busybox,
# syslinux, this script) are unchanged.
# TESTOS_REFRESH=1 looks for a newer kernel package.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${1:-bin/testos}
CACHE=$OUT/cache
REL=$OUT/current
# virtio for the simulator's NICs and disks, vfat + code pages for the FAT
# partition that holds the stored Ignition config.
MODULES=(virtio_pci virtio_net virtio_blk virtio_scsi sd_mod vfat nls_cp437 nls_ascii nls_utf8 nls_iso8859-1)

say() { echo "build-testos: $*"; }
need() { command -v "$1" >/dev/null || { echo "build-testos: $1 is missing (make deps installs it)" >&2; exit 1; }; }
for c in apt-get apt-cache dpkg-deb mkfs.vfat mcopy mmd syslinux sfdisk bzip2 sha256sum flock; do need "$c"; done
for f in /bin/busybox /usr/lib/syslinux/mbr/mbr.bin /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi /usr/lib/syslinux/modules/efi64/ldlinux.e64; do
  [ -e "$f" ] || { echo "build-testos: $f is missing (make deps installs it)" >&2; exit 1; }
done
mkdir -p "$CACHE" "$REL"
# One build at a time per output folder (make testos and a test may race).
exec 9>"$CACHE/.lock"
flock 9

# 1. The kernel: linux-image-cloud-amd64 names the current versioned package.
deb=$(ls "$CACHE"/linux-image-*-cloud-amd64_*.deb 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$deb" ] || [ "${TESTOS_REFRESH:-}" = 1 ]; then
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}' || true)
  if [ -z "$pkg" ]; then
    say "apt lists have no linux-image-cloud-amd64; running apt-get update"
    apt-get update -qq
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  fi
  say "downloading $pkg"
  (cd "$CACHE" && apt-get download -q "$pkg" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
  deb=$(ls "$CACHE"/linux-image-*-cloud-amd64_*.deb | sort -V | tail -n1)
fi
kdir=$CACHE/kernel-$(basename "$deb" .deb)
if [ ! -d "$kdir" ]; then
  say "unpacking $(basename "$deb")"
  rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp"
  dpkg-deb -x "$deb" "$kdir.tmp"
  mv "$kdir.tmp" "$kdir"
fi
kver=$(ls "$kdir/lib/modules" | head -n1)
vmlinuz=$kdir/boot/vmlinuz-$kver

# 2. The multi-call init (static) and the initramfs builder.
CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" -o "$CACHE/init" ./simulator/testos/cmd/testos-init
"$GO" build -trimpath -o "$CACHE/testos-initrd" ./simulator/testos/cmd/testos-initrd

stamp=$( { sha256sum "$0" "$CACHE/init" "$CACHE/testos-initrd" /bin/busybox "$vmlinuz" \
  /usr/lib/syslinux/mbr/mbr.bin /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi /usr/lib/syslinux/modules/efi64/ldlinux.e64 \
  | cut -d' ' -f1; echo "${MODULES[*]}"; } | sha256sum | cut -d' ' -f1)
if [ -f "$REL/.stamp" ] && [ "$(cat "$REL/.stamp")" = "$stamp" ] \
  && [ -f "$REL/flatcar_production_pxe.vmlinuz" ] && [ -f "$REL/flatcar_production_pxe_image.cpio.gz" ] \
  && [ -f "$REL/flatcar_production_image.bin.bz2" ]; then
  say "$REL is up to date (kernel $kver)"
  exit 0
fi

work=$(mktemp -d "$CACHE/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

say "initramfs (kernel $kver, modules ${MODULES[*]})"
"$CACHE/testos-initrd" -o "$work/initrd.gz" -init "$CACHE/init" -busybox /bin/busybox \
  -modules "$kdir/lib/modules/$kver" -kver "$kver" "${MODULES[@]}"
cp "$vmlinuz" "$work/vmlinuz"

# 3. The install image: one FAT partition, bootable by SeaBIOS (syslinux in
# the partition, mbr.bin in the MBR) and by UEFI (EFI/BOOT/BOOTX64.EFI =
# syslinux.efi). testos.root=disk tells the init it runs installed.
cat >"$work/syslinux.cfg" <<'CFG'
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT testos
LABEL testos
  LINUX /vmlinuz
  INITRD /initrd.gz
  APPEND console=ttyS0,115200n8 testos.root=disk
CFG
payload=$(( ($(stat -c %s "$work/vmlinuz") + $(stat -c %s "$work/initrd.gz")) / 1048576 ))
part_mib=$(( payload + 8 ))
[ $part_mib -lt 33 ] && part_mib=33
part=$work/part.img
truncate -s "${part_mib}M" "$part"
mkfs.vfat -F 16 -n TESTOS -i 7e570500 "$part" >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$part" ::/EFI ::/EFI/BOOT ::/ignition
mcopy -i "$part" "$work/vmlinuz" ::/vmlinuz
mcopy -i "$part" "$work/initrd.gz" ::/initrd.gz
mcopy -i "$part" "$work/syslinux.cfg" ::/syslinux.cfg
mcopy -i "$part" "$work/syslinux.cfg" ::/EFI/BOOT/syslinux.cfg
mcopy -i "$part" /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$part" /usr/lib/syslinux/modules/efi64/ldlinux.e64 ::/EFI/BOOT/ldlinux.e64
syslinux --install "$part"
disk=$work/disk.img
truncate -s "$(( part_mib + 1 ))M" "$disk"
dd if="$part" of="$disk" bs=1M seek=1 conv=notrunc status=none
printf 'label: dos\nstart=2048, size=%d, type=ef, bootable\n' $(( part_mib * 2048 )) | sfdisk -q --wipe-partitions never "$disk" 2> >(grep -v "contains a vfat signature" >&2)
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
bzip2 -9 -c "$disk" >"$work/image.bin.bz2"

mv "$work/vmlinuz" "$REL/flatcar_production_pxe.vmlinuz"
mv "$work/initrd.gz" "$REL/flatcar_production_pxe_image.cpio.gz"
mv "$work/image.bin.bz2" "$REL/flatcar_production_image.bin.bz2"
echo "$kver" >"$REL/kernel-version"
echo "$stamp" >"$REL/.stamp"
say "wrote $REL: $(cd "$REL" && ls -s --block-size=K flatcar_production_* | tr '\n' ' ')"
