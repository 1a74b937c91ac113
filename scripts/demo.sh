#!/usr/bin/env bash
# The demo: one tfagent on this machine, driven through tfagentctl the way a
# person on a node would. Everything lives in a temp dir removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug
demo=$(mktemp -d /tmp/tfagent-demo.XXXXXX)
pid=
cleanup() {
    if [[ -n $pid ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$demo"
}
trap cleanup EXIT

cat >"$demo/tfagent.toml" <<TOML
state_dir = "$demo/state"
socket = "$demo/tfagent.sock"
socket_allowed_uids = [$(id -u)]

# The supervised services (containerd, k3s) keep everything in the temp dir.
[services]
run_dir = "$demo/run"
containerd_root = "$demo/containerd"
k3s_data_dir = "$demo/k3s"
kubelet_root_dir = "$demo/kubelet"
log_dir = "$demo/log"
cgroups = false
TOML

"$bin/tfagent" --config "$demo/tfagent.toml" >"$demo/tfagent.log" 2>&1 &
pid=$!

ctl() { "$bin/tfagentctl" --socket "$demo/tfagent.sock" "$@"; }
show() {
    printf '\n\033[1m$ tfagentctl %s\033[0m\n' "$*"
    ctl "$@"
}

for _ in $(seq 200); do
    ctl info >/dev/null 2>&1 && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "tfagent exited:" >&2
        cat "$demo/tfagent.log" >&2
        exit 1
    fi
    sleep 0.1
done

show info
show apply -f examples/server-init.yaml --dry-run
show apply -f examples/server-init.yaml
show apply -f examples/server-init.yaml
sleep 0.5 # let the reconcile loop take its first pass
show status
show events
printf '\n\033[1m$ tfagentctl get spec | head -n 20\033[0m\n'
ctl get spec | head -n 20
echo
echo "(the VIP step is not implemented in this build; storage refuses the example's"
echo " pools and disk, which this machine does not have, before any change, and the"
echo " steps after it wait: status says so, and nothing on this machine was changed)"
