#!/usr/bin/env bash
# The main job on the embedded default: a simulated rack (management node +
# 3 servers, one of them UEFI, each with a virtual BMC) provisioned by
# `racker bootstrap` from inside its management node, ending with
# `racker status`. The rack stays up afterwards so you can look around;
# `bin/racker-sim down --name demo` removes every trace of it.
#
# LAPTOP=1 (make demo LAPTOP=1) runs laptop mode instead: 2 plain libvirt
# VMs without BMCs (racker-sim up --no-bmc), which Racker drives through
# libvirt (racker bootstrap --bmc-driver libvirt). README.md, "Laptop mode".
set -euo pipefail
cd "$(dirname "$0")/.."
name=${RACK:-demo}
sim=(bin/racker-sim --name "$name")
if [ -n "${LAPTOP:-}" ]; then
	name=${RACK:-laptop}
	sim=(bin/racker-sim --name "$name")
	set -x
	time bin/racker-sim up --name "$name" --nodes 2 --no-bmc --os testos
	bin/racker-sim exec --name "$name" -- racker plan
	time bin/racker-sim exec --name "$name" -- racker bootstrap --os testos --bmc-driver libvirt --provision flatcar --public-ips=
	bin/racker-sim exec --name "$name" -- racker status
	set +x
	cat <<MSG

Laptop mode: the 2 VMs of "$name" are provisioned through libvirt and stay up. Try:
  ${sim[*]} exec -- racker power NODE status --bmc-driver libvirt
  ${sim[*]} exec -- racker bootdev NODE --bmc-driver libvirt
  ${sim[*]} exec -- racker reprovision NODE --yes --bmc-driver libvirt
  ${sim[*]} console n1                   # the domain's serial console (Ctrl-] leaves)
Remove it with:
  ${sim[*]} down
MSG
	exit 0
fi
set -x
time bin/racker-sim up --name "$name" --nodes 3 --types bios,uefi --uefi-types uefi --os testos
bin/racker-sim exec --name "$name" -- racker factory check
# racker plan saves the rack's default choices and the two flags answer the
# rest, so bootstrap's wizard (on a terminal) has nothing to ask.
bin/racker-sim exec --name "$name" -- racker plan
time bin/racker-sim exec --name "$name" -- racker bootstrap --os testos --uefi-types uefi --provision flatcar --public-ips=
bin/racker-sim exec --name "$name" -- racker status
set +x
cat <<MSG

The simulated rack "$name" is provisioned and stays up.
Rack view in a browser: http://127.0.0.1:8088/ (run: ${sim[*]} ui)
Try:
  ${sim[*]} status                       # VMs, BMC addresses, power, console logs
  ${sim[*]} exec -- racker status        # Racker's view, from the management node
  ${sim[*]} exec -- racker reprovision NODE --yes
  ${sim[*]} exec -- journalctl -u racker-serve   # racker serve's log, from its unit
  ${sim[*]} console n1                   # serial console (Ctrl-] leaves)
Remove it with:
  ${sim[*]} down
MSG
