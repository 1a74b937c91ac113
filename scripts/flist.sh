#!/usr/bin/env bash
# Packs tfagent into a tarball laid out the way zOS's bootstrap copies an
# flist into `/`:
#   bin/tfagent  bin/tfagentctl  etc/zinit/tfagent.yaml  [bin/k3s ...]
# Usage: scripts/flist.sh [--bin-dir DIR] [--out FILE]
# The binaries the agent runs are added when their paths are given:
#   K3S_BIN, KEEPALIVED_BIN, WIREGUARD_GO_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir=target/release
out=target/flist/tfagent.tar.gz
while (($#)); do
    case "$1" in
        --bin-dir) bin_dir=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "flist: unknown argument $1" >&2; exit 2 ;;
    esac
done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -D -m 0755 "$bin_dir/tfagent" "$root/bin/tfagent"
install -D -m 0755 "$bin_dir/tfagentctl" "$root/bin/tfagentctl"
install -D -m 0644 flists/etc/zinit/tfagent.yaml "$root/etc/zinit/tfagent.yaml"
for pair in "k3s:${K3S_BIN:-}" "keepalived:${KEEPALIVED_BIN:-}" "wireguard-go:${WIREGUARD_GO_BIN:-}"; do
    name=${pair%%:*}
    path=${pair#*:}
    [[ -n $path ]] || continue
    if [[ ! -x $path ]]; then
        echo "flist: $name: $path is not an executable file" >&2
        exit 1
    fi
    install -D -m 0755 "$path" "$root/bin/$name"
done

# zOS's base image is no glibc distribution to count on: say plainly when
# the agent is dynamically linked (build with the musl target for static).
if readelf -d "$root/bin/tfagent" 2>/dev/null | grep -q NEEDED; then
    echo "flist: note: bin/tfagent is dynamically linked ($(readelf -d "$root/bin/tfagent" | grep NEEDED | grep -o '\[.*\]' | tr -d '[]' | tr '\n' ' '))"
fi

mkdir -p "$(dirname "$out")"
# FLIST_GZIP_LEVEL trades size for time (tests use 1).
tar --owner=0 --group=0 --numeric-owner --sort=name -cf - -C "$root" . |
    gzip -"${FLIST_GZIP_LEVEL:-9}" >"$out.partial"
mv "$out.partial" "$out"
echo "flist: wrote $out"
tar -tzvf "$out" | awk '{print "  " $1, $6}'
