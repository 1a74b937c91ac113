# tfagent — build, test, demo. Run as root on Debian; each target installs
# what it needs first (scripts/deps.sh).

SHELL := /bin/bash
CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: all build release test lint fuzz-build demo deps install clean flist twin twin-image
.PHONY: bench demo-down

all: build

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --workspace --locked

release: deps
	$(CARGO) build --workspace --locked --release

# The whole suite, exactly what CI runs (.ci/run): formatting, lints, then
# unit, integration and end-to-end tests (root-only ones need root), the
# zOS twin included.
test: deps lint fuzz-build twin-image
	$(CARGO) build --workspace --locked --bins
	$(CARGO) test --workspace --locked

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	scripts/check-structure.sh

# The fuzz targets (spec parsing from files and from the wire) must keep
# building; run them with `cargo +nightly fuzz run spec_document` in fuzz/.
fuzz-build:
	$(CARGO) build --manifest-path fuzz/Cargo.toml --locked --target-dir target

# The flist tarball (target/flist/tfagent.tar.gz), self-contained for zOS:
# tfagent and tfagentctl static (musl when that target is installed, else
# glibc with a static C runtime), and containerd, runc, keepalived and
# wireguard-go from this host's Debian packages, each with the libraries it
# links. Add k3s with K3S_BIN=; replace any of them the same way.
MUSL_TARGET := x86_64-unknown-linux-musl
STATIC_TARGET := x86_64-unknown-linux-gnu
STATIC_RUSTFLAGS := -C target-feature=+crt-static
export CONTAINERD_BIN ?= /usr/bin/containerd
export RUNC_BIN ?= /usr/bin/runc
export KEEPALIVED_BIN ?= /usr/sbin/keepalived
export WIREGUARD_GO_BIN ?= /usr/bin/wireguard-go
flist: deps
	@if rustup target list --installed 2>/dev/null | grep -qx $(MUSL_TARGET); then \
		$(CARGO) build --locked --release --target $(MUSL_TARGET) -p tfagent -p tfagentctl && \
		scripts/flist.sh --bin-dir target/$(MUSL_TARGET)/release; \
	else \
		RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --locked --release --target $(STATIC_TARGET) -p tfagent -p tfagentctl && \
		scripts/flist.sh --bin-dir target/$(STATIC_TARGET)/release; \
	fi

# The zOS twin (twin/): VMs shaped like zOS nodes boot tfagent from the
# flist and go through a node's life. twin-image builds their boot files
# (target/twin/): Debian's kernel, and an initramfs with zinit 0.2.1 from
# crates.io (the last release with zOS's service format), the twin's
# static helper and the flist.
ZINIT_VERSION := 0.2.1
twin-image: flist
	@test -x target/twin/zinit/bin/zinit || \
		RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) install --locked --quiet zinit@=$(ZINIT_VERSION) \
			--root target/twin/zinit --target $(STATIC_TARGET) --target-dir target/twin/zinit-build
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --locked --release --target $(STATIC_TARGET) -p tfagent-twin-guest
	scripts/twin-image.sh

twin: twin-image
	$(CARGO) test --locked -p tfagent-twin --test twin -- --nocapture

# The demo lab: 3 servers and 2 workers in network namespaces, each with its
# own tfagent and loop disk, brought up through tfagentctl apply; it keeps
# running until `make demo-down` removes every namespace, loop device, mount,
# process and file it made. Root only.
demo: build
	@scripts/demo.sh up

demo-down:
	@scripts/demo.sh down

# Every bench in agent/benches/, then one table of figures against their
# goals and anchors; the JSON goes to target/bench/results.json. Run as root
# (the namespace and loop-device benches say "not measured" otherwise).
# BENCH=api,wireguard runs some; TFAGENT_BENCH_* knobs make runs longer.
bench: deps twin-image
	@scripts/bench.sh

install: release
	install -D -m 0755 target/release/tfagent $(DESTDIR)$(PREFIX)/bin/tfagent
	install -D -m 0755 target/release/tfagentctl $(DESTDIR)$(PREFIX)/bin/tfagentctl
	install -D -m 0644 systemd/tfagent.service $(DESTDIR)/etc/systemd/system/tfagent.service
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)/usr/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	target/release/tfagentctl man > $(DESTDIR)$(PREFIX)/share/man/man1/tfagentctl.1
	target/release/tfagentctl completions bash > $(DESTDIR)/usr/share/bash-completion/completions/tfagentctl
	target/release/tfagentctl completions zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_tfagentctl
	target/release/tfagentctl completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/tfagentctl.fish

clean:
	$(CARGO) clean
