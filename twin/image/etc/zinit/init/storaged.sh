# Stands in for zOS's storaged: every disk becomes a whole-disk btrfs pool
# labelled with a random UUID (formatted only when it holds nothing),
# mounted at /mnt/<label> with quotas on; the first pool holds the
# zos-cache subvolume, bind-mounted at /var/cache.
set -e
# Full paths: the busybox shell runs its own applets (ip, blkid) before PATH.
for dev in /dev/vd?; do
    [ -b "$dev" ] || continue
    if [ -z "$(/usr/sbin/blkid -p -o value -s TYPE "$dev" || true)" ]; then
        mkfs.btrfs -q -L "$(cat /proc/sys/kernel/random/uuid)" "$dev"
    fi
    label=$(/usr/sbin/blkid -p -o value -s LABEL "$dev")
    mkdir -p "/mnt/$label"
    mount -t btrfs "$dev" "/mnt/$label"
    btrfs quota enable "/mnt/$label"
    if ! mountpoint -q /var/cache; then
        [ -d "/mnt/$label/zos-cache" ] || btrfs subvolume create "/mnt/$label/zos-cache" >/dev/null
        mkdir -p /var/cache
        mount -o bind "/mnt/$label/zos-cache" /var/cache
    fi
done
mountpoint -q /var/cache
