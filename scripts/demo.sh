#!/usr/bin/env bash
# The main job on the embedded default: a simulated rack (management node +
# 3 servers, one of them UEFI, each with a virtual BMC) provisioned by
# `racker bootstrap` from inside its management node, ending with
# `racker status`. The rack stays up afterwards so you can look around;
# `bin/racker-sim down --name demo` removes every trace of it.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${RACK:-demo}
sim=(bin/racker-sim --name "$name")
set -x
bin/racker-sim up --name "$name" --nodes 3 --types bios,uefi --uefi-types uefi --os testos
bin/racker-sim exec --name "$name" -- racker factory check
bin/racker-sim exec --name "$name" -- racker bootstrap --os testos --uefi-types uefi
bin/racker-sim exec --name "$name" -- racker status
set +x
cat <<MSG

The simulated rack "$name" is provisioned and stays up. Try:
  ${sim[*]} status                       # VMs, BMC addresses, power, console logs
  ${sim[*]} exec -- racker status        # Racker's view, from the management node
  ${sim[*]} exec -- racker reprovision NODE --yes
  ${sim[*]} exec -- journalctl -u racker-serve   # racker serve's log, from its unit
  ${sim[*]} console n1                   # serial console (Ctrl-] leaves)
Remove it with:
  ${sim[*]} down
MSG
