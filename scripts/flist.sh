#!/usr/bin/env bash
# Packs tfagent into a tarball laid out the way zOS's bootstrap copies an
# flist into `/`: bin/tfagent, bin/tfagentctl, etc/zinit/tfagent.yaml, and
# the programs the agent runs, each where the agent's defaults look for it:
#   usr/local/bin/k3s        K3S_BIN
#   usr/bin/containerd       CONTAINERD_BIN
#   usr/bin/runc             RUNC_BIN
#   usr/sbin/keepalived      KEEPALIVED_BIN
#   usr/bin/wireguard-go     WIREGUARD_GO_BIN
# zOS brings none of their libraries: a dynamically linked program is packed
# with every library it links (and the dynamic loader) under
# usr/lib/tfagent/lib, and pointed at them (patchelf: interpreter + rpath).
# tfagent and tfagentctl themselves must be static (--allow-dynamic is for
# tests of the layout only).
# Usage: scripts/flist.sh [--bin-dir DIR] [--out FILE] [--allow-dynamic]
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir=target/release
out=target/flist/tfagent.tar.gz
allow_dynamic=false
while (($#)); do
    case "$1" in
        --bin-dir) bin_dir=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --allow-dynamic) allow_dynamic=true; shift ;;
        *) echo "flist: unknown argument $1" >&2; exit 2 ;;
    esac
done

lib_dir=usr/lib/tfagent/lib
is_dynamic() { readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"

for name in tfagent tfagentctl; do
    if [[ ! -x $bin_dir/$name ]]; then
        echo "flist: $bin_dir/$name is not an executable file" >&2
        exit 1
    fi
    if is_dynamic "$bin_dir/$name" && ! $allow_dynamic; then
        echo "flist: $bin_dir/$name is dynamically linked; zOS has no libraries for it (build it static: make flist)" >&2
        exit 1
    fi
    install -D -m 0755 "$bin_dir/$name" "$root/bin/$name"
done
install -D -m 0644 flists/etc/zinit/tfagent.yaml "$root/etc/zinit/tfagent.yaml"

# Copies PROGRAM to DEST in the root with the libraries it links.
pack_program() {
    local name=$1 program=$2 dest=$3
    install -D -m 0755 "$program" "$root/$dest"
    is_dynamic "$program" || return 0
    if ! command -v patchelf >/dev/null; then
        echo "flist: $name is dynamically linked and patchelf is not installed" >&2
        exit 1
    fi
    local libs
    if ! libs=$(ldd "$program"); then
        echo "flist: $name: ldd cannot resolve its libraries" >&2
        exit 1
    fi
    if grep -q 'not found' <<<"$libs"; then
        echo "flist: $name: missing libraries: $(grep 'not found' <<<"$libs" | tr -s ' \t' ' ')" >&2
        exit 1
    fi
    mkdir -p "$root/$lib_dir"
    local lib
    for lib in $(awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]*ld-linux/{print $1}' <<<"$libs"); do
        [[ -e $root/$lib_dir/$(basename "$lib") ]] ||
            install -m 0644 "$(readlink -f "$lib")" "$root/$lib_dir/$(basename "$lib")"
    done
    local loader
    loader=$(readelf -l "$program" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
    chmod 0755 "$root/$lib_dir/$(basename "$loader")"
    # DT_RPATH (not RUNPATH): it also covers the libraries' own dependencies.
    patchelf --set-interpreter "/$lib_dir/$(basename "$loader")" \
        --force-rpath --set-rpath "/$lib_dir" "$root/$dest"
}

for entry in "k3s:${K3S_BIN:-}:usr/local/bin/k3s" \
    "containerd:${CONTAINERD_BIN:-}:usr/bin/containerd" \
    "runc:${RUNC_BIN:-}:usr/bin/runc" \
    "keepalived:${KEEPALIVED_BIN:-}:usr/sbin/keepalived" \
    "wireguard-go:${WIREGUARD_GO_BIN:-}:usr/bin/wireguard-go"; do
    IFS=: read -r name path dest <<<"$entry"
    [[ -n $path ]] || continue
    if [[ ! -x $path ]]; then
        echo "flist: $name: $path is not an executable file" >&2
        exit 1
    fi
    pack_program "$name" "$path" "$dest"
done

mkdir -p "$(dirname "$out")"
# FLIST_GZIP_LEVEL trades size for time (tests use 1).
tar --owner=0 --group=0 --numeric-owner --sort=name -cf - -C "$root" . |
    gzip -"${FLIST_GZIP_LEVEL:-9}" >"$out.partial"
mv "$out.partial" "$out"
echo "flist: wrote $out ($(du -h "$out" | cut -f1))"
tar -tzvf "$out" | awk '$1 !~ /^d/ {print "  " $1, $6}'
