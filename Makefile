# tfagent — build, test, demo. Run as root on Debian; each target installs
# what it needs first (scripts/deps.sh).

SHELL := /bin/bash
CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: all build release test lint fuzz-build demo deps install clean

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
	$(CARGO) test --workspace --locked

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# The fuzz targets (spec parsing from files and from the wire) must keep
# building; run them with `cargo +nightly fuzz run spec_document` in fuzz/.
fuzz-build:
	$(CARGO) build --manifest-path fuzz/Cargo.toml --locked --target-dir target

# Start an agent, apply the example server-init spec, show its status.
demo: build
	@scripts/demo.sh

install: release
	install -D -m 0755 target/release/tfagent $(DESTDIR)$(PREFIX)/bin/tfagent
	install -D -m 0755 target/release/tfagentctl $(DESTDIR)$(PREFIX)/bin/tfagentctl
	install -D -m 0644 systemd/tfagent.service $(DESTDIR)/etc/systemd/system/tfagent.service

clean:
	$(CARGO) clean
