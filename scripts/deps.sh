#!/usr/bin/env bash
# Installs, idempotently, every Debian package Racker's build, tests, simulator
# and benchmarks need, and starts the daemons a machine without systemd lacks.
# Run as root.
set -euo pipefail

packages=(
  # boot files served over TFTP/HTTP
  ipxe
  # simulator: VMs under libvirt/QEMU (TCG), firmware
  qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients ipxe-qemu ovmf
  # real peers and clients for integration tests and benchmarks
  ipmitool openipmi dnsmasq-base busybox-static iproute2 iptables tcpdump
  # an independent Redfish client (OpenStack Ironic's sushy) for the vBMC and bench
  python3-sushy
  # the node-side client of the boot contract (racker-booted.service runs curl)
  curl
  # installer image: a real OCI client reads the archives `make image` writes
  # (also racker-sim up, which runs the image in the management node)
  skopeo
  # the simulated management node's userland (make mgmtos takes Flatcar's
  # kinds of tools from these packages; the rest are in every Debian)
  gawk jq wget less
  # test OS image building (a GPT disk laid out like Flatcar's)
  cpio syslinux syslinux-common syslinux-efi mtools dosfstools fdisk bzip2 e2fsprogs
  # what Flatcar's flatcar-install needs, copied into the test OS with
  # their libraries (udevadm is unpacked from the udev package instead, so
  # no udev daemon starts here)
  bash gawk gpg gpg-agent dirmngr wget util-linux mount coreutils sed grep btrfs-progs
)

if [ "$(id -u)" != 0 ]; then
  echo "deps: run as root (apt-get install)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "deps: all ${#packages[@]} packages installed"
fi

# No systemd here: start libvirt's daemons ourselves when they are not running
# (the simulator, the libvirt BMC driver and the e2e suite talk to libvirtd).
mkdir -p /var/run/libvirt /var/log/libvirt
# Without udev /dev/kvm stays root-only; libvirt then re-probes QEMU on every
# call (40-60 s per domain start). Debian's udev rule gives group kvm 0660.
# Domains still run under TCG (type qemu): KVM fails on these machines.
if [ -e /dev/kvm ] && getent group kvm >/dev/null; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi
pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d
for _ in $(seq 50); do
  [ -S /var/run/libvirt/libvirt-sock ] && break
  sleep 0.2
done
[ -S /var/run/libvirt/libvirt-sock ] || { echo "deps: libvirtd did not start" >&2; exit 1; }
echo "deps: libvirtd and virtlogd running"
