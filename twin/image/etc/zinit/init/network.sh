# Stands in for zOS's internet/networkd: the NIC enslaved to the `zos`
# bridge, which takes the NIC's MAC and holds the node's address (static
# here: the twin's underlay has no DHCP), and forwarding on.
set -e
# Full paths: the busybox shell runs its own applets (ip, blkid) before PATH.
address=$(sed -n 's/.*\btwin\.ip=\([^ ]*\).*/\1/p' /proc/cmdline)
/usr/sbin/ip link set lo up
/usr/sbin/ip link add zos type bridge
/usr/sbin/ip link set zos address "$(cat /sys/class/net/eth0/address)"
/usr/sbin/ip link set eth0 master zos
/usr/sbin/ip link set eth0 up
/usr/sbin/ip link set zos up
/usr/sbin/ip addr add "$address" dev zos
echo 1 >/proc/sys/net/ipv4/ip_forward
