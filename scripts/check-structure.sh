#!/usr/bin/env bash
# The layout rules the README's Architecture section states, checked:
# no import cycle between modules, the CLI free of the daemon's host
# crates, the pure model free of runtime and host crates, and no source
# file (tests aside) past 800 lines.
set -euo pipefail
cd "$(dirname "$0")/.."
failed=0

python3 scripts/modcycles.py || failed=1

# What tfagentctl must never link: the daemon's netlink, WireGuard and
# metrics crates, and an HTTP server.
ctl_tree=$(cargo tree --locked -p tfagentctl -e normal,features --prefix none)
if grep -E '^(rtnetlink|netlink-[a-z-]+|wireguard-uapi|prometheus-client|tfagent|tfagent-supervisor) v' <<<"$ctl_tree" | sort -u | grep .; then
    echo "check-structure: tfagentctl links a crate of the daemon (above)" >&2
    failed=1
fi
if grep -E '^hyper feature "server"' <<<"$ctl_tree" | sort -u | grep .; then
    echo "check-structure: tfagentctl links an HTTP server (above)" >&2
    failed=1
fi

# The pure model: no async runtime, no host access.
spec_tree=$(cargo tree --locked -p tfagent-spec -e normal --prefix none)
if grep -E '^(tokio|nix|rtnetlink|tonic|hyper) v' <<<"$spec_tree" | sort -u | grep .; then
    echo "check-structure: tfagent-spec depends on a runtime or host crate (above)" >&2
    failed=1
fi
# The fuzz targets reach the model alone.
if grep -E '^tfagent(-supervisor|-pki|ctl)? *=' fuzz/Cargo.toml; then
    echo "check-structure: fuzz/ depends on more than tfagent-spec and tfagent-proto" >&2
    failed=1
fi

# Source files stay readable: at most 800 lines before their inline test
# module; test files and test folders are exempt.
while IFS= read -r -d '' file; do
    lines=$(awk '/^#\[cfg\(test\)\]/ { getline next_line; if (next_line ~ /^mod /) { print NR - 1; found = 1; exit } } END { if (!found) print NR }' "$file")
    if ((lines > 800)); then
        echo "check-structure: $file has $lines lines before its tests (at most 800)" >&2
        failed=1
    fi
done < <(find proto/src spec/src pki/src supervisor/src agent/src ctl/src testkit/src -name '*.rs' \
    ! -name 'tests.rs' ! -name '*_tests.rs' ! -path '*/tests/*' -print0)

if ((failed)); then
    exit 1
fi
echo "check-structure: layers, dependencies and file sizes as the README says"
