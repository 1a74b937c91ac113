# tfagent — build, test, demo. Run as root on Debian; each target installs
# what it needs first (scripts/deps.sh).

SHELL := /bin/bash
CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: all build release test lint fuzz-build demo deps install clean flist
.PHONY: bench demo-down

all: build

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --workspace --locked

release: deps
	$(CARGO) build --workspace --locked --release

# The whole suite, exactly what CI runs (.ci/run): formatting, lints, then
# unit, integration and end-to-end tests (root-only ones need root).
test: deps lint fuzz-build
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

# The flist tarball (target/flist/tfagent.tar.gz): static binaries when the
# musl target is installed, else glibc ones. Add the binaries the agent runs
# with K3S_BIN=, KEEPALIVED_BIN=, WIREGUARD_GO_BIN=.
MUSL_TARGET := x86_64-unknown-linux-musl
flist: deps
	@if rustup target list --installed 2>/dev/null | grep -qx $(MUSL_TARGET); then \
		$(CARGO) build --workspace --locked --release --target $(MUSL_TARGET) && \
		scripts/flist.sh --bin-dir target/$(MUSL_TARGET)/release; \
	else \
		$(CARGO) build --workspace --locked --release && \
		scripts/flist.sh --bin-dir target/release; \
	fi

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
bench: deps
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
