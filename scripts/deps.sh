#!/usr/bin/env bash
# Makes sure what the build, tests and demo need is on this machine, and
# installs missing Debian packages with apt-get (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build needs: rustc links through the C toolchain, and
# the fuzz targets build libFuzzer (C++). The rest are the real parts the
# agent drives and its root tests use: loop devices, blkid and mkfs
# (util-linux, btrfs-progs, e2fsprogs, xfsprogs), namespaces and veth
# (iproute2), userspace WireGuard and wg (wireguard-go, wireguard-tools),
# containerd with runc, keepalived for the VIP election, ping for the
# WireGuard end-to-end tests. The tests read
# the metrics endpoint with curl and check its text with the Prometheus
# project's own OpenMetrics parser (python3-prometheus-client).
packages=(gcc g++ libc6-dev
    util-linux mount e2fsprogs btrfs-progs xfsprogs
    iproute2 wireguard-go wireguard-tools iputils-ping
    containerd runc keepalived
    curl python3-prometheus-client
    openssl python3 # the demo lab's stand-in apiserver and make bench's table
    patchelf        # the flist: programs pointed at the libraries it carries
    qemu-system-x86 busybox-static) # the zOS twin's VMs and their userland

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "deps: missing Debian packages: ${missing[*]}; run as root or install them" >&2
        exit 1
    fi
    echo "deps: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "deps: cargo is not installed. Install the Rust toolchain named in rust-toolchain.toml" >&2
    echo "      (e.g. with rustup: https://rustup.rs), then run this again." >&2
    exit 1
fi
