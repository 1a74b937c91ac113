#!/usr/bin/env bash
# `make bench`: runs every bench in agent/benches/ (each file is one), then
# prints one table of their figures and writes it as JSON.
#
# Each bench reports a figure as a `BENCH {json}` line (agent/benches/common);
# this collects those lines, keeps each bench's whole output in
# target/bench/NAME.log, and hands the figures to bench-table.py. A bench that
# fails, or reports nothing, gets a row saying so. Benches never fail this on
# a number: only a bench that could not run makes the exit status non-zero.
#
# Knobs (environment):
#   BENCH=api,storage            run only these benches
#   TFAGENT_BENCH_TIMEOUT=900    seconds one bench may take before it is stopped
#   TFAGENT_BENCH_<KNOB>=N       a bench's own run length; see the knobs in
#                                README (e.g. TFAGENT_BENCH_API_SECS=30 for longer runs)
set -uo pipefail
cd "$(dirname "$0")/.."

out=target/bench
mkdir -p "$out"
figures=$out/figures.jsonl
: >"$figures"

if [[ $(id -u) -ne 0 ]]; then
    echo "bench: not root: the benches that need root (namespaces, loop devices) report 'not measured'" >&2
fi

benches=()
for file in agent/benches/*.rs; do
    name=$(basename "$file" .rs)
    if [[ -n ${BENCH:-} && ",$BENCH," != *",$name,"* ]]; then
        continue
    fi
    benches+=("$name")
done
if ((${#benches[@]} == 0)); then
    echo "bench: no bench matches BENCH=${BENCH:-}" >&2
    exit 1
fi

# One build of them all first, so the timings below do not share the CPU
# with the compiler.
echo "bench: building ${benches[*]} (release profile)"
build_args=()
for name in "${benches[@]}"; do build_args+=(--bench "$name"); done
# The benches run both binaries; tfagentctl is another package's.
if ! cargo build --release --locked --workspace --bins ||
    ! cargo bench -p tfagent --locked --no-run "${build_args[@]}"; then
    echo "bench: the benches did not build" >&2
    exit 1
fi

failed=0
started=$(date +%s)
for name in "${benches[@]}"; do
    echo
    echo "== bench $name"
    log=$out/$name.log
    bench_start=$(date +%s)
    timeout --kill-after=30 "${TFAGENT_BENCH_TIMEOUT:-900}" \
        cargo bench -q -p tfagent --locked --bench "$name" >"$log" 2>&1 &
    bench_pid=$!
    # Follow the log for people, without the machine lines.
    tail -n +1 -f --pid="$bench_pid" "$log" | grep --line-buffered -v '^BENCH '
    wait "$bench_pid"
    status=$?
    took=$(($(date +%s) - bench_start))
    count=$(grep -c '^BENCH ' "$log")
    grep '^BENCH ' "$log" | sed 's/^BENCH //' >>"$figures"
    if ((status != 0)); then
        failed=1
        why="exited with status $status after ${took} s"
        ((status == 124)) && why="stopped after TFAGENT_BENCH_TIMEOUT=${TFAGENT_BENCH_TIMEOUT:-900} s"
        python3 -c 'import json,sys; print(json.dumps({"bench": sys.argv[1], "metric": "(the bench)", "status": "failed", "note": sys.argv[2]}))' \
            "$name" "$why; see $log" >>"$figures"
    elif ((count == 0)); then
        python3 -c 'import json,sys; print(json.dumps({"bench": sys.argv[1], "metric": "(the bench)", "status": "no figures", "note": sys.argv[2]}))' \
            "$name" "it printed no BENCH line (not using agent/benches/common yet?); its output is in $log" >>"$figures"
    fi
done

echo
python3 scripts/bench-table.py "$figures" "$out/results.json" \
    --seconds $(($(date +%s) - started)) --command "make bench${BENCH:+ BENCH=$BENCH}"
exit $failed
