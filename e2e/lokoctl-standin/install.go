package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// installScript is /opt/installer of Lokomotive v0.9.0's
// assets/terraform-modules/matchbox-flatcar/templates/install.yaml.tmpl,
// with the values the module passes for a cached install
// (baseurl_flag "-b HTTP_ENDPOINT/assets/flatcar") filled in as
// Terraform's templatefile would.
func installScript(v vars, mac string) string {
	var b strings.Builder
	b.WriteString("#!/bin/bash -ex\n")
	b.WriteString("# unmount any leftovers at the beginning before we modify the disk the mount uses\n")
	b.WriteString("umount /tmp/oemfs || true\n")
	b.WriteString("lvchange -an /dev/mapper/* || true\n")
	if v.boolean("wipe_additional_disks", true) { // Racker's lokocfg sets it
		b.WriteString(`disks="$(lsblk -lnpdb -x SIZE -o NAME \
  | (
  while IFS= read -r drive; do
    mountpoints=$(lsblk -ln -o MOUNTPOINT "$drive")
    if [[ -z "$mountpoints" ]]; then
      echo "$drive"
    fi
  done))"
for disk in ${disks}; do
  wipefs -f -a "${disk}" || echo "error: failed to wipe ${disk}"
done
`)
	}
	b.WriteString("flatcar-install \\\n")
	if v.boolean("install_to_smallest_disk", false) {
		b.WriteString("  -s \\\n")
	} else {
		fmt.Fprintf(&b, "  -d %s \\\n", v.str("install_disk"))
	}
	http := v.str("matchbox_http_endpoint")
	fmt.Fprintf(&b, "  -C %s \\\n  -V %s \\\n  -o \"\" \\\n  -b %s/assets/flatcar\n", v.str("os_channel"), v.str("os_version"), http)
	b.WriteString("udevadm settle\n")
	b.WriteString("OEM_DEV=\"$(blkid -t \"LABEL=OEM\" -o device)\"\n")
	b.WriteString("mkdir -p /tmp/oemfs\n")
	b.WriteString("mount \"${OEM_DEV}\" /tmp/oemfs\n")
	b.WriteString("# append to file on newly created partition, do not remove the defaults\n")
	fmt.Fprintf(&b, "echo 'set linux_append=\" ignition.config.url=%s/ignition?mac=%s&os=installed\"' >> /tmp/oemfs/grub.cfg\n", http, mac)
	fmt.Fprintf(&b, "echo 'set linux_console=\"%s\"' >> /tmp/oemfs/grub.cfg\n", strings.Join(v.list("kernel_console"), " "))
	b.WriteString("umount /tmp/oemfs\n")
	b.WriteString(v.str("install_pre_reboot_cmds") + "\n")
	b.WriteString("systemctl reboot\n")
	return b.String()
}

// installIgnition is what the ct provider renders from the install
// template: Ignition spec 2.3.0, the version Lokomotive v0.9.0's ct
// provider writes. Racker's installer_clc_snippets (Container Linux
// Config that ct would merge in) are not merged: the stand-in has no ct.
func installIgnition(v vars, mac string) (string, error) {
	const unit = `[Unit]
Requires=network-online.target
After=network-online.target
[Service]
Type=oneshot
RemainAfterExit=true
Restart=on-failure
RestartSec=10s
ExecStart=/opt/installer
[Install]
WantedBy=multi-user.target
`
	type content struct {
		Source string `json:"source"`
	}
	type file struct {
		Filesystem string  `json:"filesystem"`
		Path       string  `json:"path"`
		Contents   content `json:"contents"`
		Mode       int     `json:"mode"`
	}
	cfg := map[string]any{
		"ignition": map[string]string{"version": "2.3.0"},
		"systemd": map[string]any{"units": []map[string]any{
			{"name": "installer.service", "enabled": true, "contents": unit},
			{"name": "sshd.socket", "dropins": []map[string]string{
				{"name": "10-sshd-port.conf", "contents": "[Socket]\nListenStream=\nListenStream=2222\n"}}},
		}},
		"storage": map[string]any{"files": []file{{Filesystem: "root", Path: "/opt/installer", Mode: 0o500,
			Contents: content{Source: "data:," + url.PathEscape(installScript(v, mac))}}}},
		"passwd": map[string]any{"users": []map[string]any{{"name": "core", "sshAuthorizedKeys": v.list("ssh_public_keys")}}},
	}
	b, err := json.Marshal(cfg)
	return string(b), err
}
