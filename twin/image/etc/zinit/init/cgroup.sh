# As zOS's init/cgroup.sh: cgroup v1 only, one hierarchy per controller.
set -e
mount -t tmpfs cgroup_root /sys/fs/cgroup
for sys in pids cpuset cpu cpuacct blkio memory devices freezer net_cls perf_event net_prio hugetlb; do
    mkdir -p /sys/fs/cgroup/$sys
    mount -t cgroup $sys -o $sys /sys/fs/cgroup/$sys/
done
