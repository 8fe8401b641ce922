#!/usr/bin/env bash
# The main job on the embedded example rack (examples/rack): check it and plan
# it, with state in a temporary folder. Once the simulator lands this brings up
# a simulated rack and provisions it.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r examples/rack "$work/oem"
chmod 600 "$work/oem/ipmi_user" "$work/oem/ipmi_password"
flags=(--oem-dir "$work/oem" --state-dir "$work/state" --mgmt-mac 00:11:22:33:44:00)
set -x
bin/racker factory check "${flags[@]}"
bin/racker plan "${flags[@]}"
