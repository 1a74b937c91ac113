#!/usr/bin/env bash
# The demo lab: a small tfagent cluster on this machine, brought up only
# through `tfagentctl apply`, the way the reservation layer drives real nodes.
#
#   scripts/demo.sh up     (make demo)       build the lab, show every node, leave it running
#   scripts/demo.sh down   (make demo-down)  remove everything it made
#
# Nodes: 3 servers and 2 workers, each a network namespace with its own
# tfagent (own state, run and config dirs, own unix socket), a loop device
# over a sparse file for its volume, and a private mount namespace with a
# /run of its own (its volume mounts and wireguard-go's socket stay there).
# They share an underlay bridge that lives in a namespace of its own, and
# each agent builds the WireGuard mesh from its spec (wireguard-go).
# Nothing is added to the host's own network namespace or mounts; only
# 10.100.0.0/24 (mesh) and 192.0.2.0/24 (underlay) are used, inside the
# namespaces.
#
# Environment:
#   K3S_BIN=/path/to/k3s       run the real k3s (otherwise k3s points at a
#                              binary that is not there, and the servers run a
#                              stand-in apiserver instead, labelled as such)
#   TFAGENT_DEMO_DIR=DIR       where its files live (default /tmp/tfagent-demo)
#   TFAGENT_DEMO_PREFIX=NAME   namespace prefix, ≤ 8 chars (default tfd)
#   TFAGENT_DEMO_BIN=DIR       tfagent and tfagentctl (default target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."

repo=$PWD
dir=${TFAGENT_DEMO_DIR:-/tmp/tfagent-demo}
prefix=${TFAGENT_DEMO_PREFIX:-tfd}
bin=$(realpath "${TFAGENT_DEMO_BIN:-target/debug}")

# name:underlay-index:mesh-address:role
nodes=(
    server-1:1:10.100.0.1:server-init
    server-2:2:10.100.0.2:server-join
    server-3:3:10.100.0.3:server-join
    worker-1:11:10.100.0.11:agent
    worker-2:12:10.100.0.12:agent
)
vip=10.100.0.250
token=37a19483e94eed8fa33078987edd509271efdba80b2b9d0a
underlay_ns=$prefix-lan
bold=$'\033[1m' plain=$'\033[0m'
[[ -t 1 && -z ${NO_COLOR:-} ]] || bold='' plain=''

say() { printf '%s\n' "$*"; }
heading() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
field() { IFS=: read -r name index address role <<<"$1"; }
ctl() { "$bin/tfagentctl" --socket "$dir/$1/tfagent.sock" "${@:2}"; }
in_ns() { ip netns exec "$prefix-$1" "${@:2}"; }

# Our namespaces, whatever state the last run left.
our_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' |
        grep -E "^$prefix-(lan|server-[0-9]+|worker-[0-9]+)\$" || true
}

# Loop devices over files in our dir (also once the files are deleted).
our_loops() {
    losetup --list --noheadings --output NAME,BACK-FILE 2>/dev/null |
        awk -v dir="$dir/" 'index($2, dir) == 1 {print $1}' || true
}

down() {
    local ns pids left tries loop
    local namespaces
    namespaces=$(our_namespaces)
    # Every process in our namespaces is ours: the agents and their
    # children (containerd, wireguard-go, k3s) and the stand-in apiservers.
    # TERM first (the agents exit cleanly), then KILL what is left.
    for signal in TERM TERM KILL KILL; do
        left=0
        for ns in $namespaces; do
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [[ -n $pids ]] || continue
            left=1
            kill -s "$signal" $pids 2>/dev/null || true
        done
        ((left)) || break
        for tries in $(seq 50); do
            left=0
            for ns in $namespaces; do
                [[ -z $(ip netns pids "$ns" 2>/dev/null || true) ]] || left=1
            done
            ((left)) || break
            sleep 0.1
        done
        ((left)) || break
    done
    for ns in $namespaces; do
        if [[ -n $(ip netns pids "$ns" 2>/dev/null || true) ]]; then
            say "demo-down: processes are still running in $ns: $(ip netns pids "$ns" | xargs)" >&2
            return 1
        fi
        # The veths go with their namespaces.
        ip netns del "$ns"
    done
    # The mounts lived in the agents' private mount namespaces, gone with
    # their processes; one the host still shows under our dir goes too.
    if [[ -d $dir ]]; then
        awk -v dir="$dir/" 'index($5, dir) == 1 {print $5}' /proc/self/mountinfo | sort -r |
            while read -r target; do umount -l "$target" || true; done
    fi
    for tries in $(seq 50); do
        for loop in $(our_loops); do losetup -d "$loop" 2>/dev/null || true; done
        [[ -z $(our_loops) ]] && break
        sleep 0.1
    done
    if [[ -n $(our_loops) ]]; then
        say "demo-down: loop devices still attached: $(our_loops | xargs)" >&2
        return 1
    fi
    rm -rf "$dir"
    if [[ -n $namespaces ]]; then
        say "demo-down: removed namespaces $(echo $namespaces | xargs), their processes, loop devices and $dir"
    else
        say "demo-down: nothing was up"
    fi
}

wait_for() { # what, command…: up to 30 s
    local what=$1
    shift
    for _ in $(seq 300); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    say "demo: timed out waiting for $what" >&2
    return 1
}

start_node() {
    local node=$1 index=$2 ns=$prefix-$1 port=p$2 home=$dir/$1
    mkdir -p "$home"
    ip netns add "$ns"
    in_ns "$node" ip link set lo up
    ip -n "$underlay_ns" link add "$port" type veth peer name eth0 netns "$ns"
    ip -n "$underlay_ns" link set "$port" master br0 up
    ip -n "$ns" address add "192.0.2.$index/24" dev eth0
    ip -n "$ns" link set eth0 up

    # Its disk: a loop device over a sparse file, formatted by the agent.
    truncate -s 320M "$home/disk.img"
    local disk
    disk=$(losetup --find --show "$home/disk.img")
    echo "$disk" >"$home/disk"

    cat >"$home/tfagent.toml" <<TOML
state_dir = "$home/state"
socket = "$home/tfagent.sock"
log_level = "info"
resync_interval_secs = 10
wireguard_backend = "userspace"
allowed_devices = ["$disk"]

# The supervised services keep their files under the node's dir; /run is
# the node's own (a tmpfs in its mount namespace).
[services]
run_dir = "/run/tfagent"
containerd_root = "$home/containerd"
k3s_data_dir = "$home/k3s"
kubelet_root_dir = "$home/kubelet"
log_dir = "$home/log"
cgroups = false
TOML
    if [[ -z ${K3S_BIN:-} ]]; then
        # The VIP is gated on the stand-in apiserver (checked against the
        # lab's CA), since there is no k3s to ask.
        cat >>"$home/tfagent.toml" <<TOML

[vip]
ready_url = "https://127.0.0.1:6443/readyz"
ready_ca = "$dir/stand-in-ca.crt"
TOML
    fi
    # setsid: the node outlives this script. A private mount namespace with
    # its own /run: its mounts and wireguard-go's socket stay inside it.
    setsid ip netns exec "$ns" unshare --mount --propagation private -- \
        sh -c 'mount -t tmpfs -o mode=0755 tfagent-run /run && exec "$0" --config "$1"' \
        "$bin/tfagent" "$home/tfagent.toml" </dev/null >"$home/tfagent.log" 2>&1 &
}

json_field() { # FILE-or-stdin, python expression over `d`
    python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

peers_yaml() { # all nodes but $1
    local self=$1 entry
    for entry in "${nodes[@]}"; do
        field "$entry"
        [[ $name == "$self" ]] && continue
        cat <<YAML
      - name: $name
        public_key: $(cat "$dir/$name/public-key")
        endpoint: 192.0.2.$index:51820
        allowed_ips: [$address/32]
        persistent_keepalive: 25
YAML
    done
}

write_spec() { # entry
    field "$1"
    local home=$dir/$name k3s_bin=${K3S_BIN:-/nonexistent/k3s-is-not-installed-here}
    local containerd_bin
    containerd_bin=$(command -v containerd || echo /nonexistent/containerd)
    {
        cat <<YAML
# $name of the demo lab ($role), written by scripts/demo.sh.
node_name: $name
role: $role
cluster:
  token: $token
  vip: $vip
YAML
        [[ $role != server-init ]] && say "  join_url: https://$vip:6443"
        cat <<YAML
network:
  wireguard:
    interface: tfk3s
    listen_port: 51820
    addresses: [$address/24]
    peers:
$(peers_yaml "$name")
  vip:
YAML
        if [[ $role == server-* ]]; then
            # The highest ready server holds the VIP.
            local priority=$((150 - 50 * (index - 1)))
            cat <<YAML
    virtual_router_id: 51
    priority: $priority
    advert_interval_ms: 200
YAML
        fi
        cat <<YAML
    servers:
      - {name: server-1, address: 10.100.0.1}
      - {name: server-2, address: 10.100.0.2}
      - {name: server-3, address: 10.100.0.3}
storage:
  volumes:
    - name: data
      device: $(cat "$home/disk")
      filesystem: btrfs
      format: if-blank
      mount_point: $home/data
  persist:
    volume: data
    paths:
      - {path: $home/k3s}
      - {path: $home/kubelet}
      - {path: $home/containerd}
services:
  containerd:
    binary: $containerd_bin
  k3s:
    binary: $k3s_bin
YAML
    } >"$home/spec.yaml"
}

# A stand-in for k3s's apiserver (HTTPS :6443, /readyz), labelled as one:
# what the VIP step probes until a real k3s runs here.
start_stand_in() { # server name
    local name=$1 home=$dir/$1
    touch "$home/apiserver-ready"
    setsid ip netns exec "$prefix-$name" python3 "$repo/testkit/fixtures/stand-in-apiserver.py" \
        "$name" 6443 "$dir/stand-in.crt" "$dir/stand-in.key" "$home/apiserver-ready" \
        </dev/null >"$home/stand-in-apiserver.log" 2>&1 &
}

vip_agreed() { # every node names the same VIP holder
    local holders
    holders=$(for entry in "${nodes[@]}"; do
        field "$entry"
        ctl "$name" -o json status | json_field 'd.get("vip", {}).get("holder", "")'
    done | sort -u)
    [[ -n $holders && $(wc -l <<<"$holders") -eq 1 ]]
}

converged() { # node: its storage and network steps converged
    ctl "$1" -o json status | json_field \
        'all(s["condition"] == "converged" for s in d["steps"] if s["step"] in ("storage", "network"))' |
        grep -qx True
}

summary() {
    python3 - "$dir" "${nodes[@]}" <<'PY'
import json, sys
dir, entries = sys.argv[1], sys.argv[2:]
print(f"{'node':<9} {'mesh address':<13} {'volume':<26} {'wireguard':<22} {'services':<40} {'vip'}")
for entry in entries:
    name, _, address, _ = entry.split(":")
    try:
        with open(f"{dir}/{name}/status.json") as f:
            status = json.load(f)
    except (OSError, ValueError):
        print(f"{name:<9} (no status)")
        continue
    volumes = ", ".join(f"{v['name']} {v['state']}" for v in status.get("volumes", [])) or "-"
    wg = status.get("wireguard") or {}
    peers = wg.get("peers", [])
    shaken = sum(1 for p in peers if p.get("latest_handshake"))
    wireguard = f"{'up' if wg.get('up') else 'down'}, {shaken}/{len(peers)} handshakes"
    def service(s):
        if s["name"] == "k3s" and "/nonexistent/" in s.get("message", ""):
            return "k3s not installed"
        return f"{s['name']} {s['state']}"
    services = ", ".join(service(s) for s in status.get("services", [])) or "-"
    v = status.get("vip") or {}
    vip = f"held by {v.get('holder') or 'no one yet'}"
    if v.get("election_state"):
        vip += f" ({name}: {v['election_state']})"
    print(f"{name:<9} {address:<13} {volumes:<26} {wireguard:<22} {services:<40} {vip}")
PY
}

up() {
    if [[ $(id -u) -ne 0 ]]; then
        say "demo: needs root (network namespaces, loop devices, mounts)" >&2
        exit 1
    fi
    if [[ -e $dir || -n $(our_namespaces) ]]; then
        say "demo: an earlier demo lab is up; taking it down first"
        down
    fi
    if ((${#prefix} > 8)); then
        say "demo: TFAGENT_DEMO_PREFIX must be at most 8 characters" >&2
        exit 1
    fi
    mkdir -p "$dir"
    chmod 0700 "$dir"
    # A lab that fails half-way is taken down again, after showing why.
    trap 'failed_up' EXIT

    heading "the underlay: a bridge in namespace $underlay_ns"
    ip netns add "$underlay_ns"
    ip -n "$underlay_ns" link add br0 type bridge
    ip -n "$underlay_ns" link set br0 up

    if [[ -z ${K3S_BIN:-} ]]; then
        # The stand-in apiservers' certificate, from a CA of the lab's own.
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$dir/stand-in-ca.key" -out "$dir/stand-in-ca.crt" -days 1 \
            -subj /CN=tfagent-demo-ca 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$dir/stand-in.key" -out "$dir/stand-in.csr" -subj /CN=stand-in-apiserver 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:10.100.0.1,IP:10.100.0.2,IP:10.100.0.3\n' "$vip" \
            >"$dir/stand-in.ext"
        openssl x509 -req -in "$dir/stand-in.csr" -CA "$dir/stand-in-ca.crt" \
            -CAkey "$dir/stand-in-ca.key" -CAcreateserial -days 1 -out "$dir/stand-in.crt" \
            -extfile "$dir/stand-in.ext" 2>/dev/null
    fi

    heading "5 nodes: namespace, loop disk and tfagent each"
    local entry
    for entry in "${nodes[@]}"; do
        field "$entry"
        start_node "$name" "$index"
    done
    for entry in "${nodes[@]}"; do
        field "$entry"
        if ! wait_for "tfagent of $name" ctl "$name" info; then
            cat "$dir/$name/tfagent.log" >&2
            exit 1
        fi
        ctl "$name" -o json info | json_field 'd["wireguard_public_key"]' >"$dir/$name/public-key"
        say "$name: namespace $prefix-$name, underlay 192.0.2.$index, disk $(cat "$dir/$name/disk"), socket $dir/$name/tfagent.sock"
    done

    if [[ -z ${K3S_BIN:-} ]]; then
        heading "k3s"
        say "k3s is not installed here: each node's k3s points at /nonexistent/k3s-is-not-installed-here"
        say "(set K3S_BIN=/path/to/k3s to run the real one). Each server namespace runs a STAND-IN"
        say "apiserver instead (testkit/fixtures/stand-in-apiserver.py, HTTPS :6443): NOT k3s."
        for entry in "${nodes[@]}"; do
            field "$entry"
            [[ $role == server-* ]] && start_stand_in "$name"
        done
    fi

    heading "specs, applied with tfagentctl apply"
    for entry in "${nodes[@]}"; do
        field "$entry"
        write_spec "$entry"
        printf '%s$ tfagentctl apply -f %s%s\n' "$bold" "$dir/$name/spec.yaml" "$plain"
        ctl "$name" apply -f "$dir/$name/spec.yaml"
    done
    # Applying the same spec again changes nothing, not even the generation.
    printf '%s$ tfagentctl apply -f %s   (the same spec again)%s\n' "$bold" "$dir/server-1/spec.yaml" "$plain"
    ctl server-1 apply -f "$dir/server-1/spec.yaml"

    heading "waiting for storage and the mesh to converge"
    for entry in "${nodes[@]}"; do
        field "$entry"
        if wait_for "$name's storage and network steps" converged "$name"; then
            say "$name: storage and network converged"
        else
            ctl "$name" status || true
        fi
    done
    for entry in "${nodes[@]}"; do
        field "$entry"
        [[ $name == worker-1 ]] && continue
        # The first packets wait for a handshake, which a busy machine can
        # take seconds to finish: ping until an answer (up to 30 s).
        if wait_for "worker-1's ping to $name" in_ns worker-1 ping -c 1 -W 1 "$address"; then
            say "worker-1 → $name ($address) over WireGuard: ok"
        else
            say "worker-1 → $name ($address) over WireGuard: NO ANSWER"
        fi
        if [[ $role == server-* && -z ${K3S_BIN:-} ]]; then
            local served
            served=$(in_ns worker-1 curl -sk --max-time 3 "https://$address:6443/" || true)
            say "worker-1 → $name's stand-in apiserver (https://$address:6443): ${served:-NO ANSWER}"
        fi
    done

    heading "the VIP ($vip): keepalived elects a ready server, the agents route it"
    if wait_for "a VIP holder" vip_agreed; then
        say "every node routes $vip to $(ctl worker-2 -o json status | json_field 'd["vip"]["holder"]')"
        served=$(in_ns worker-2 curl -s --max-time 3 --cacert "$dir/stand-in-ca.crt" "https://$vip:6443/" || true)
        say "worker-2 → https://$vip:6443/: ${served:-NO ANSWER}"
    else
        say "no VIP holder yet (is an apiserver ready on a server?)"
    fi

    for entry in "${nodes[@]}"; do
        field "$entry"
        heading "$name: tfagentctl status"
        ctl "$name" status
        ctl "$name" -o json status >"$dir/$name/status.json"
    done

    heading "summary"
    summary
    say
    say "The VIP ($vip): every node routes it to the server keepalived elected; try"
    say "     ip netns exec $prefix-worker-2 curl -sk https://$vip:6443/   (answers with the holder's name)"
    [[ -z ${K3S_BIN:-} ]] && say "k3s: not installed here (stand-in apiservers on the servers, not k3s)."
    say "Try: $bin/tfagentctl --socket $dir/server-1/tfagent.sock status"
    say "     ip netns exec $prefix-worker-1 ping 10.100.0.2"
    [[ -z ${K3S_BIN:-} ]] && say "     ip netns exec $prefix-worker-1 curl -k https://10.100.0.2:6443/readyz   (the stand-in)"
    say
    say "The lab keeps running. Tear it down with: make demo-down"
    trap - EXIT
}

failed_up() {
    local log
    say "demo: failed; the agents' last log lines:" >&2
    for log in "$dir"/*/tfagent.log; do
        [[ -e $log ]] && { say "-- $log" >&2; tail -n 20 "$log" >&2; }
    done
    say "demo: taking the lab down" >&2
    down >&2 || true
}

case ${1:-up} in
up) up ;;
down)
    if [[ $(id -u) -ne 0 ]]; then
        say "demo-down: needs root" >&2
        exit 1
    fi
    down
    ;;
*)
    say "usage: $0 up|down" >&2
    exit 2
    ;;
esac
