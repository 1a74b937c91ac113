#!/usr/bin/env bash
# Builds the zOS twin's boot files under target/twin/:
#   vmlinuz          Debian's own kernel (linux-image-amd64, extracted from
#                    the .deb, never installed on this host)
#   initramfs.gz     the node's base image: busybox, util-linux's blkid,
#                    btrfs-progs, iproute2, wireguard-tools and the
#                    libraries they link; zOS's kernel modules (no ext4,
#                    no xfs); zinit 0.2.1; the twin's init, storaged and
#                    networkd stand-ins; and the tfagent flist, which the
#                    twin's bootstrap unpacks into / at every boot.
# Needs the flist (make flist) and root for nothing. One line on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/twin
cache=$out/cache
flist=${FLIST:-target/flist/tfagent.tar.gz}
guest=${TWIN_GUEST:-target/x86_64-unknown-linux-gnu/release/twin-guest}
zinit=${ZINIT:-$out/zinit/bin/zinit}
fail() { echo "twin-image: $*" >&2; exit 1; }

[[ -f $flist ]] || fail "no flist at $flist (make flist)"
[[ -x $guest ]] || fail "no twin-guest at $guest"
[[ -x $zinit ]] || fail "no zinit at $zinit"
command -v busybox >/dev/null || fail "busybox is not installed (busybox-static)"

# The kernel: the package linux-image-amd64 depends on, this Debian's own.
mkdir -p "$cache"
package=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[[ -n $package ]] || fail "apt knows no linux-image-amd64 (apt-get update?)"
deb=$(ls "$cache/${package}"_*.deb 2>/dev/null | head -n1 || true)
if [[ -z $deb ]]; then
    (cd "$cache" && apt-get download -q "$package" >/dev/null 2>&1) || fail "cannot download the kernel package $package"
    deb=$(ls "$cache/${package}"_*.deb | head -n1)
fi
kernel=$cache/kernel
if [[ ! -d $kernel/lib/modules ]]; then
    rm -rf "$kernel.partial"
    dpkg-deb -x "$deb" "$kernel.partial" || fail "cannot extract $deb"
    mv "$kernel.partial" "$kernel"
fi
release=$(ls "$kernel/lib/modules" | head -n1)
cp "$kernel/boot/vmlinuz-$release" "$out/vmlinuz"

root=$(mktemp -d "$out/root.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/lib/twin,lib64,etc,var/lib/twin/flists,root,tmp,run,mnt}

# Userland: busybox for the basics; these tools as zOS has them.
install -m 0755 "$(command -v busybox)" "$root/bin/busybox"
tools=(/usr/sbin/blkid /usr/bin/mountpoint /usr/sbin/mkfs.btrfs /usr/bin/btrfs /usr/sbin/ip /usr/bin/wg)
for tool in "${tools[@]}"; do
    [[ -x $tool ]] || fail "$tool is missing (util-linux, btrfs-progs, iproute2, wireguard-tools)"
    install -D -m 0755 "$tool" "$root$tool"
    for lib in $(ldd "$tool" | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]*ld-linux/{print $1}'); do
        [[ -e $root$lib ]] || install -D -m 0644 "$(readlink -f "$lib")" "$root$lib"
    done
done
chmod 0755 "$root"/lib64/ld-linux-x86-64.so.2
real_tools=" $(for tool in "${tools[@]}"; do basename "$tool"; done | tr '\n' ' ')"
for applet in $(busybox --list-full); do
    # The real tool wins over busybox's applet of the same name.
    [[ $real_tools == *" $(basename "$applet") "* ]] && continue
    [[ -e $root/$applet || -L $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done
install -m 0755 "$zinit" "$root/sbin/zinit"
install -m 0755 "$guest" "$root/usr/lib/twin/twin-guest"

# Modules: zOS's set and what it needs (modules.dep), nothing else.
# crc32c_generic first: libcrc32c (btrfs, conntrack) only names it as a soft
# dependency, which modinfo's depends= leaves out.
wanted=(crc32c_generic wireguard btrfs overlay fuse veth bridge br_netfilter iscsi_tcp vxlan ip_vs tun nf_tables virtio_pci virtio_blk virtio_net)
mods=$kernel/lib/modules/$release
# The package leaves modules.dep to depmod at install time: dependencies
# come from each module's own `depends=` (its .modinfo).
python3 - "$mods" "$root/lib/modules/$release" "$root/etc/twin/modules.load" "${wanted[@]}" <<'PY' || fail "cannot pick the kernel modules"
import os, re, shutil, sys
src, dst, load, wanted = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
by_name = {}
for top, _, files in os.walk(os.path.join(src, "kernel")):
    for file in files:
        if file.endswith(".ko"):
            path = os.path.relpath(os.path.join(top, file), src)
            by_name[file[:-3].replace("-", "_")] = path
def depends(path):
    data = open(os.path.join(src, path), "rb").read()
    found = re.search(rb"\0depends=([^\0]*)\0", data)
    names = found.group(1).decode().split(",") if found else []
    return [by_name[n.replace("-", "_")] for n in names if n]
deps, order = {}, []
def visit(path):
    if path in deps:
        return
    deps[path] = depends(path)
    for dep in deps[path]:
        visit(dep)
    order.append(path)
for name in wanted:
    if name not in by_name:
        sys.exit(f"module {name} is not in this kernel")
    visit(by_name[name])
os.makedirs(os.path.dirname(load), exist_ok=True)
os.makedirs(dst, exist_ok=True)
with open(os.path.join(dst, "modules.dep"), "w") as out:
    for path in order:
        out.write(f"{path}: {' '.join(deps[path])}\n")
shutil.copy(os.path.join(src, "modules.builtin"), dst)
for path in order:
    os.makedirs(os.path.join(dst, os.path.dirname(path)), exist_ok=True)
    shutil.copy(os.path.join(src, path), os.path.join(dst, path))
with open(load, "w") as out:
    out.write("\n".join(order) + "\n")
PY
for module in ext4 xfs; do
    if grep -q "/$module.ko" "$root/lib/modules/$release/modules.dep"; then
        fail "the module set pulled in $module, which zOS does not have"
    fi
done

# The twin's init, its zinit services and the node's tfagent boot config.
cp -a twin/image/. "$root/"
mv "$root/twin-init" "$root/sbin/twin-init"
cp "$flist" "$root/var/lib/twin/flists/tfagent.tar.gz"

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | busybox cpio -o -H newc 2>/dev/null) |
    gzip -1 >"$out/initramfs.gz.partial"
mv "$out/initramfs.gz.partial" "$out/initramfs.gz"
echo "twin-image: $out/vmlinuz ($release), $out/initramfs.gz ($(du -h "$out/initramfs.gz" | cut -f1))"
