#!/usr/bin/env bash
# Builds the simulator's test OS as a Flatcar-style release folder
# (docs/boot-contract.md §2), signed like a Flatcar mirror:
#
#   OUT/current/flatcar_production_pxe.vmlinuz        Debian's cloud kernel
#   OUT/current/flatcar_production_pxe_image.cpio.gz  Go init, Debian's tools for
#                                                     flatcar-install, busybox, modules
#   OUT/current/flatcar_production_image.bin.bz2      GPT disk laid out like Flatcar's:
#                                                     EFI-SYSTEM 1, BIOS-BOOT 2, USR-A 3,
#                                                     USR-B 4, OEM 6, ROOT 9
#   OUT/current/flatcar_production_image.bin.bz2.sig  detached OpenPGP signature
#   OUT/current/version.txt (+ .sig)                  FLATCAR_VERSION=testos-…
#   OUT/current/image-signing-key.asc                 the public key of both signatures
#
# The install step runs Flatcar's own flatcar-install from
# ../shared/peers/flatcar/ (never copied into the repository; FLATCAR_INSTALL=
# names another copy). Without it the init's Go stand-in runs, with a
# warning; in CI (CI=true) a missing script fails the build.
#
# Usage: scripts/build-testos.sh [OUT]   (default bin/testos; GO=go)
# Idempotent: downloads are cached in OUT/cache (with the test signing key),
# and nothing is rebuilt when the inputs (kernel and udev packages, the Go
# programs, busybox, syslinux, Debian's tools, flatcar-install, this script)
# are unchanged. TESTOS_REFRESH=1 looks for newer packages.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${1:-bin/testos}
CACHE=$OUT/cache
REL=$OUT/current
# virtio for the simulator's NICs and disks, vfat + code pages for the EFI
# System Partition (the first-boot stamp lives there).
MODULES=(virtio_pci virtio_net virtio_blk virtio_scsi sd_mod vfat nls_cp437 nls_ascii nls_utf8 nls_iso8859-1)
# Every program Flatcar's flatcar-install refuses to start without (its
# toolset, plus blkid and umount), from the build machine's Debian packages
# (scripts/deps.sh installs them). udevadm comes from the udev package,
# unpacked below rather than installed: installing udev would start a udev
# daemon on the build machine.
TOOLS=(/usr/bin/bash /usr/bin/gawk /usr/bin/gpg /usr/bin/gpg-agent /usr/bin/dirmngr /usr/bin/wget /usr/bin/bzip2 /usr/bin/btrfstune
  /usr/bin/lsblk /usr/sbin/blockdev /usr/sbin/wipefs /usr/sbin/blkid /usr/bin/mount /usr/bin/umount
  /usr/bin/cp /usr/bin/cut /usr/bin/dd /usr/bin/head /usr/bin/ls /usr/bin/mkdir /usr/bin/mkfifo
  /usr/bin/mktemp /usr/bin/rm /usr/bin/sort /usr/bin/tee /usr/bin/sed /usr/bin/grep /bin/udevadm)
UDEV_PACKAGES=(udev)
FLATCAR_INSTALL=${FLATCAR_INSTALL:-../shared/peers/flatcar/flatcar-install}

say() { echo "build-testos: $*"; }
die() { echo "build-testos: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is missing (make deps installs it)"; }
for c in apt-get apt-cache dpkg-deb mkfs.vfat mkfs.ext4 mcopy mmd syslinux sfdisk bzip2 sha256sum flock; do need "$c"; done
for f in /bin/busybox /usr/lib/syslinux/mbr/gptmbr.bin /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi /usr/lib/syslinux/modules/efi64/ldlinux.e64; do
  [ -e "$f" ] || die "$f is missing (make deps installs it)"
done
for t in "${TOOLS[@]}"; do
  [ "$t" = /bin/udevadm ] || [ -e "$t" ] || die "$t is missing (make deps installs it)"
done
mkdir -p "$CACHE" "$REL"
# One build at a time per output folder (make testos and a test may race).
exec 9>"$CACHE/.lock"
flock 9

# download PACKAGE: the newest cached .deb of PACKAGE, fetched when missing.
download() {
  local pkg=$1 deb
  deb=$(ls "$CACHE"/"${pkg}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$deb" ] || [ "${TESTOS_REFRESH:-}" = 1 ]; then
    say "downloading $pkg" >&2
    (cd "$CACHE" && apt-get download -q "$pkg" 2>&1 | grep -v "^W: Download is performed unsandboxed" >&2 || true)
    deb=$(ls "$CACHE"/"${pkg}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
    [ -n "$deb" ] || die "could not download $pkg (apt-get update?)"
  fi
  echo "$deb"
}

# 1. The kernel: linux-image-cloud-amd64 names the current versioned package.
kpkg=$(ls "$CACHE"/linux-image-*-cloud-amd64_*.deb 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$kpkg" ] || [ "${TESTOS_REFRESH:-}" = 1 ]; then
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}' || true)
  if [ -z "$pkg" ]; then
    say "apt lists have no linux-image-cloud-amd64; running apt-get update"
    apt-get update -qq
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  fi
  kpkg=$(download "$pkg")
fi
kdir=$CACHE/kernel-$(basename "$kpkg" .deb)
if [ ! -d "$kdir" ]; then
  say "unpacking $(basename "$kpkg")"
  rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp"
  dpkg-deb -x "$kpkg" "$kdir.tmp"
  mv "$kdir.tmp" "$kdir"
fi
kver=$(ls "$kdir/lib/modules" | head -n1)
vmlinuz=$kdir/boot/vmlinuz-$kver

# 2. udevadm and its private library, unpacked from Debian's packages.
debs=()
for p in "${UDEV_PACKAGES[@]}"; do debs+=("$(download "$p")"); done
debroot=$CACHE/debroot-$(basename "${debs[0]}" .deb)
if [ ! -d "$debroot" ]; then
  rm -rf "$debroot.tmp" && mkdir -p "$debroot.tmp"
  for d in "${debs[@]}"; do dpkg-deb -x "$d" "$debroot.tmp"; done
  mv "$debroot.tmp" "$debroot"
fi

# 3. Flatcar's own flatcar-install, or the stand-in.
installer_args=()
if [ -f "$FLATCAR_INSTALL" ]; then
  installer_args=(-flatcar-install "$FLATCAR_INSTALL")
  installer_sum=$(sha256sum "$FLATCAR_INSTALL" | cut -d' ' -f1)
elif [ "${CI:-}" = true ]; then
  die "Flatcar's flatcar-install is not at $FLATCAR_INSTALL; CI must test against the real one"
else
  say "WARNING: Flatcar's flatcar-install is not at $FLATCAR_INSTALL: the test OS installs with its Go stand-in" >&2
  installer_sum=stand-in
fi

# 4. The Go programs: the multi-call init (static), the initramfs builder
# and the signer.
CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" -o "$CACHE/init" ./simulator/testos/cmd/testos-init
"$GO" build -trimpath -o "$CACHE/testos-initrd" ./simulator/testos/cmd/testos-initrd
"$GO" build -trimpath -o "$CACHE/testos-sign" ./simulator/testos/cmd/testos-sign

tool_files=()
for t in "${TOOLS[@]}"; do
  if [ -e "$debroot$t" ]; then tool_files+=("$debroot$t"); else tool_files+=("$t"); fi
done
stamp=$( { sha256sum "$0" "$CACHE/init" "$CACHE/testos-initrd" "$CACHE/testos-sign" /bin/busybox "$vmlinuz" \
  /usr/lib/syslinux/mbr/gptmbr.bin /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi /usr/lib/syslinux/modules/efi64/ldlinux.e64 \
  "${tool_files[@]}" "${debs[@]}" | cut -d' ' -f1; echo "${MODULES[*]} $installer_sum"; } | sha256sum | cut -d' ' -f1)
version=testos-${stamp:0:10}
files=(flatcar_production_pxe.vmlinuz flatcar_production_pxe_image.cpio.gz flatcar_production_image.bin.bz2
  flatcar_production_image.bin.bz2.sig version.txt version.txt.sig image-signing-key.asc)
uptodate=yes
[ -f "$REL/.stamp" ] && [ "$(cat "$REL/.stamp")" = "$stamp" ] || uptodate=no
for f in "${files[@]}"; do [ -f "$REL/$f" ] || uptodate=no; done
if [ $uptodate = yes ]; then
  say "$REL is up to date ($version, kernel $kver)"
  exit 0
fi

work=$(mktemp -d "$CACHE/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

say "initramfs (kernel $kver, modules ${MODULES[*]}, ${#TOOLS[@]} Debian programs)"
# The public key of the images goes into the netboot initramfs: its
# flatcar-install verifies with it when given no -k, as Flatcar's does
# with Flatcar's key (the signing key is made here on the first build).
"$CACHE/testos-sign" -key "$CACHE/image-signing-key.private.asc" -pub "$work/image-signing-key.asc"
"$CACHE/testos-initrd" -o "$work/initrd.gz" -init "$CACHE/init" -busybox /bin/busybox \
  -modules "$kdir/lib/modules/$kver" -kver "$kver" -root "$debroot" -image-key "$work/image-signing-key.asc" \
  $(printf -- '-tool %s ' "${TOOLS[@]}") ${installer_args[@]+"${installer_args[@]}"} "${MODULES[@]}"
# The installed system never runs flatcar-install (a reinstall netboots), so
# the image carries the initramfs without Debian's programs: a third of the
# size, which every install under TCG has to download, bunzip and write.
"$CACHE/testos-initrd" -o "$work/initrd-disk.gz" -init "$CACHE/init" -busybox /bin/busybox \
  -modules "$kdir/lib/modules/$kver" -kver "$kver" "${MODULES[@]}"
cp "$vmlinuz" "$work/vmlinuz"

# 5. The install image, partitioned like Flatcar's (the numbers and labels
# are what flatcar-install and the boot process look for) but small, since
# a node under TCG has to bunzip and write all of it:
#   1 EFI-SYSTEM  FAT, the kernel, the initrd, syslinux for SeaBIOS (gptmbr.bin
#                 in the MBR boots the partition with the legacy-BIOS-bootable
#                 attribute) and EFI/BOOT/BOOTX64.EFI for UEFI, and the
#                 first-boot stamp flatcar/first_boot
#   2 BIOS-BOOT   empty (GRUB's core image on Flatcar)
#   3 USR-A       empty (the test OS's /usr is in its initrd)
#   4 USR-B       empty
#   6 OEM         ext4 labelled OEM: flatcar-install -i writes config.ign here
#   9 ROOT        ext4 labelled ROOT: what Ignition writes, kept across boots
# testos.root=disk tells the init it runs installed.
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
export MTOOLS_SKIP_CHECK=1 E2FSPROGS_FAKE_TIME=1
payload=$(( ($(stat -c %s "$work/vmlinuz") + $(stat -c %s "$work/initrd-disk.gz")) / 1048576 ))
esp_mib=$(( payload + 6 ))
[ $esp_mib -lt 33 ] && esp_mib=33 # FAT16's minimum cluster count
: >"$work/first_boot"
truncate -s "${esp_mib}M" "$work/esp.img"
mkfs.vfat -F 16 -n EFI-SYSTEM -i 7e570501 "$work/esp.img" >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/flatcar
mcopy -i "$work/esp.img" "$work/vmlinuz" ::/vmlinuz
mcopy -i "$work/esp.img" "$work/initrd-disk.gz" ::/initrd.gz
mcopy -i "$work/esp.img" "$work/syslinux.cfg" ::/syslinux.cfg
mcopy -i "$work/esp.img" "$work/syslinux.cfg" ::/EFI/BOOT/syslinux.cfg
mcopy -i "$work/esp.img" /usr/lib/SYSLINUX.EFI/efi64/syslinux.efi ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$work/esp.img" /usr/lib/syslinux/modules/efi64/ldlinux.e64 ::/EFI/BOOT/ldlinux.e64
mcopy -i "$work/esp.img" "$work/first_boot" ::/flatcar/first_boot
oem_mib=4 root_mib=32
for fs in OEM:$oem_mib:7e570506-0000-4000-8000-000000000006 ROOT:$root_mib:7e570509-0000-4000-8000-000000000009; do
  IFS=: read -r label mib uuid <<<"$fs"
  truncate -s "${mib}M" "$work/$label.img"
  mkfs.ext4 -q -L "$label" -U "$uuid" -E root_owner=0:0,hash_seed=$uuid "$work/$label.img"
done
# Partition starts in MiB; 1 MiB before the first for the GPT, 1 after the last for its backup.
p1=1 p2=$(( 1 + esp_mib )) p3=$(( p2 + 1 )) p4=$(( p3 + 1 )) p6=$(( p4 + 1 )) p9=$(( p6 + oem_mib ))
disk_mib=$(( p9 + root_mib + 1 ))
disk=$work/disk.img
truncate -s "${disk_mib}M" "$disk"
s() { echo $(( $1 * 2048 )); }
sfdisk -q --wipe never "$disk" <<EOF
label: gpt
label-id: 7E570500-0000-4000-8000-000000000000
first-lba: 2048
disk.img1 : start=$(s $p1), size=$(s $esp_mib), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=7E570500-0000-4000-8000-000000000001, name="EFI-SYSTEM", attrs="LegacyBIOSBootable"
disk.img2 : start=$(s $p2), size=$(s 1), type=21686148-6449-6E6F-744E-656564454649, uuid=7E570500-0000-4000-8000-000000000002, name="BIOS-BOOT"
disk.img3 : start=$(s $p3), size=$(s 1), type=5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6, uuid=7E570500-0000-4000-8000-000000000003, name="USR-A"
disk.img4 : start=$(s $p4), size=$(s 1), type=5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6, uuid=7E570500-0000-4000-8000-000000000004, name="USR-B"
disk.img6 : start=$(s $p6), size=$(s $oem_mib), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=7E570500-0000-4000-8000-000000000006, name="OEM"
disk.img9 : start=$(s $p9), size=$(s $root_mib), type=3884DD41-8582-4404-B9A8-E9B84F2DF50E, uuid=7E570500-0000-4000-8000-000000000009, name="ROOT"
EOF
dd if="$work/esp.img" of="$disk" bs=1M seek=$p1 conv=notrunc status=none
dd if="$work/OEM.img" of="$disk" bs=1M seek=$p6 conv=notrunc status=none
dd if="$work/ROOT.img" of="$disk" bs=1M seek=$p9 conv=notrunc status=none
syslinux --install --offset $(( p1 * 1048576 )) "$disk"
dd if=/usr/lib/syslinux/mbr/gptmbr.bin of="$disk" bs=440 count=1 conv=notrunc status=none
bzip2 -9 -c "$disk" >"$work/image.bin.bz2"

# 6. The release's version file (read by flatcar-install -V current, and by
# Racker to name the release) and the signatures.
printf 'FLATCAR_BUILD=0\nFLATCAR_BRANCH=0\nFLATCAR_PATCH=0\nFLATCAR_VERSION=%s\nFLATCAR_VERSION_ID=%s\n' "$version" "$version" >"$work/version.txt"
mv "$work/image.bin.bz2" "$work/flatcar_production_image.bin.bz2"
"$CACHE/testos-sign" -key "$CACHE/image-signing-key.private.asc" -pub "$work/image-signing-key.asc" \
  "$work/flatcar_production_image.bin.bz2" "$work/version.txt"

mv "$work/vmlinuz" "$work/flatcar_production_pxe.vmlinuz"
mv "$work/initrd.gz" "$work/flatcar_production_pxe_image.cpio.gz"
rm -f "$REL/.stamp"
for f in "${files[@]}"; do mv "$work/$f" "$REL/$f"; done
echo "$kver" >"$REL/kernel-version"
echo "$stamp" >"$REL/.stamp"
say "wrote $REL ($version, $( [ "$installer_sum" = stand-in ] && echo "stand-in flatcar-install" || echo "Flatcar's flatcar-install")): $(cd "$REL" && ls -s --block-size=K flatcar_production_* | tr '\n' ' ')"
