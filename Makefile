# tfagent — build, test, demo. Run as root on Debian; each target installs
# what it needs first (scripts/deps.sh).

SHELL := /bin/bash
CARGO ?= cargo
PREFIX ?= /usr/local

.PHONY: all build release test lint demo deps install clean

all: build

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --workspace --locked

release: deps
	$(CARGO) build --workspace --locked --release

# The whole suite, exactly what CI runs (.ci/run): formatting, lints, then
# unit, integration and end-to-end tests (root-only ones need root).
test: deps lint
	$(CARGO) test --workspace --locked

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# Start an agent, apply the example server-init spec, show its status.
demo: build
	@scripts/demo.sh

install: release
	install -D -m 0755 target/release/tfagent $(DESTDIR)$(PREFIX)/bin/tfagent
	install -D -m 0755 target/release/tfagentctl $(DESTDIR)$(PREFIX)/bin/tfagentctl
	install -D -m 0644 systemd/tfagent.service $(DESTDIR)/etc/systemd/system/tfagent.service

clean:
	$(CARGO) clean
