#!/usr/bin/env bash
# Builds the simulated management node's OS image: a read-only /usr shaped
# like Flatcar's, holding only the kind of tools Flatcar ships (bash,
# coreutils, util-linux, procps, iproute2, curl, wget, tar/gzip/bzip2/xz,
# grep/sed/gawk/findutils, less, jq) taken from this machine's Debian
# packages with their shared libraries, plus the node's service manager
# (simulator/unitd: /sbin/init, systemctl, journalctl). No iPXE, no dnsmasq,
# no QEMU, no Go: what Racker needs beyond this it must bring itself.
#
#   OUT/usr/      the image racker-sim up copies into each rack's node
#   OUT/.stamp    what it was built from
#
# Usage: scripts/build-mgmtos.sh [OUT]   (default bin/mgmtos; GO=go)
# Idempotent: nothing is rebuilt while this script, the service manager,
# the packages above and the system's shared libraries are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${1:-bin/mgmtos}
CACHE=$OUT/cache

# Debian packages whose programs go in (Flatcar ships the same tools).
REQUIRED=(bash coreutils util-linux mount bsdutils procps iproute2 curl wget tar gzip bzip2 xz-utils
  grep sed gawk findutils diffutils less debianutils hostname jq)
# Single programs from packages that bring much more than Flatcar has.
EXTRA_BINS=(/usr/bin/getent)

say() { echo "build-mgmtos: $*"; }
die() { echo "build-mgmtos: $*" >&2; exit 1; }
for c in dpkg-query ldd sha256sum flock; do command -v "$c" >/dev/null || die "$c is missing"; done
for p in "${REQUIRED[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || die "package $p is not installed (make deps installs it)"
done
[ -f /etc/ssl/certs/ca-certificates.crt ] || die "/etc/ssl/certs/ca-certificates.crt is missing (make deps installs ca-certificates)"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" -o "$CACHE/unitd" ./simulator/unitd/cmd/unitd
# The inputs: this script, unitd, the CA bundle, the packages' versions and
# the system's shared libraries (names, sizes, times: cheap to list).
stamp=$( { sha256sum "$0" "$CACHE/unitd" /etc/ssl/certs/ca-certificates.crt | cut -d' ' -f1
  dpkg-query -W -f='${Package} ${Version}\n' "${REQUIRED[@]}"
  ls -l --time-style=+%s /lib/x86_64-linux-gnu/ /lib64/; } | sha256sum | cut -d' ' -f1)
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$stamp" ] && [ -x "$OUT/usr/lib/unitd/unitd" ]; then
  say "$OUT/usr is up to date"
  exit 0
fi
start=$(date +%s.%N)
new=$OUT/usr.new
rm -rf "$new"
mkdir -p "$new"/{bin,sbin,lib/x86_64-linux-gnu,lib64,lib/unitd,share/oem,share/baselayout/ssl/certs,share/ca-certificates}

# dest maps a host program path to its place in the image (merged /usr),
# in REPLY (no subshell: this runs for hundreds of files).
dest() { case $1 in /bin/*|/sbin/*) REPLY=${1#/} ;; /usr/*) REPLY=${1#/usr/} ;; *) REPLY= ;; esac; }

# 1. Programs: every file in a bin/sbin folder of the packages, regular
# files copied, symlinks (alternatives included) resolved to their target.
programs=()
while read -r f; do
  case $f in /bin/*|/sbin/*|/usr/bin/*|/usr/sbin/*) [ -e "$f" ] && [ ! -d "$f" ] && programs+=("$f") ;; esac
done < <(dpkg-query -L "${REQUIRED[@]}" | sort -u)
programs+=("${EXTRA_BINS[@]}")
mapfile -t reals < <(realpath -e "${programs[@]}")
declare -A have
for r in "${reals[@]}"; do dest "$r"; have[$REPLY]=1; done
elves=()
for i in "${!programs[@]}"; do
  f=${programs[$i]} real=${reals[$i]}
  dest "$f"; d=$REPLY
  [ -e "$new/$d" ] || [ -L "$new/$d" ] && continue
  dest "$real"; rd=$REPLY
  if [ -L "$f" ] && [ -n "${have[$rd]:-}" ] && [ "$rd" != "$d" ]; then
    ln -s "/usr/$rd" "$new/$d"
  else
    cp "$real" "$new/$d"
    elves+=("$real")
  fi
done
chmod 0755 "$new"/bin/* "$new"/sbin/* 2>/dev/null || true
ln -sf bash "$new/bin/sh" # Flatcar's /bin/sh is bash
# Names Debian gives through its alternatives system (set up by package
# scripts, so absent from the packages' file lists).
ln -sf gawk "$new/bin/awk"
[ -e "$new/bin/which.debianutils" ] && ln -sf which.debianutils "$new/bin/which"

# 2. Their shared libraries (what ldd resolves), under the soname they are
# asked for, and the dynamic loader where the ELF headers name it.
mapfile -t libs < <(ldd "${elves[@]}" 2>/dev/null | awk '/=> \//{print $3} /^\t\/lib64\//{print $1}' | sort -u)
for l in "${libs[@]}"; do
  b=${l##*/}
  [ -e "$new/lib/x86_64-linux-gnu/$b" ] || cp -L "$l" "$new/lib/x86_64-linux-gnu/$b"
done
ln -sf ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$new/lib64/ld-linux-x86-64.so.2"

# 3. The service manager, as the OS's init, systemctl and journalctl.
cp "$CACHE/unitd" "$new/lib/unitd/unitd"
ln -sf ../lib/unitd/unitd "$new/sbin/init"
ln -sf ../lib/unitd/unitd "$new/bin/systemctl"
ln -sf ../lib/unitd/unitd "$new/bin/journalctl"

# 4. What the first boot copies into /etc, and the OS's identity.
cp /etc/ssl/certs/ca-certificates.crt "$new/share/ca-certificates/ca-certificates.crt"
b=$new/share/baselayout
ln -s /usr/share/ca-certificates/ca-certificates.crt "$b/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/bin/bash\ncore:x:500:500:Flatcar-style admin:/home/core:/bin/bash\nnobody:x:65534:65534:nobody:/:/usr/sbin/nologin\n' >"$b/passwd"
printf 'root:x:0:\nwheel:x:10:root,core\ncore:x:500:\nnogroup:x:65534:\n' >"$b/group"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$b/hosts"
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$b/nsswitch.conf"
printf 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/bin\n' >"$b/profile"
cat >"$new/lib/os-release" <<'EOF'
NAME="Racker simulated management node"
ID=racker-mgmtos
ID_LIKE=flatcar
PRETTY_NAME="Racker simulated management node (Flatcar layout, Debian userland)"
HOME_URL="https://github.com/racker/racker"
EOF

rm -rf "$OUT/usr.old"
[ -d "$OUT/usr" ] && mv "$OUT/usr" "$OUT/usr.old"
mv "$new" "$OUT/usr"
rm -rf "$OUT/usr.old"
echo "$stamp" >"$OUT/.stamp"
took=$(echo "$(date +%s.%N) - $start" | bc 2>/dev/null || echo "?")
say "wrote $OUT/usr: $(find "$OUT/usr" -type f | wc -l) files, ${#elves[@]} programs, ${#libs[@]} libraries, $(du -sh "$OUT/usr" | cut -f1) (${took} s)"
