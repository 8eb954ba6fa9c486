# ami-rollout. Builds share one target directory outside the clone, so every checkout and CI run
# on this machine reuses the compiled AWS SDKs (a cold build takes many minutes on 2 cores).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/ami-rollout/target
FUNCTIONS := resolve-ami update-template start-refresh check-ecs-health rollback
VENV := .venv
DIST := dist
LOCAL := infra/local
LOCAL_PY := $(LOCAL)/.venv/bin/python

.PHONY: help build test lint fmt unit package demo clean local-venv local-up local-down local-seed

help:
	@echo "make test     formatting, clippy -D warnings, and every test (the CI command)"
	@echo "make build    debug build of the five functions"
	@echo "make package  five release bootstrap.zip files in $(DIST)/ (cargo-lambda, x86_64)"
	@echo "make demo     the main job on the local AWS (arrives with the local AWS, see README)"
	@echo "make local-up / local-down / local-seed   the local AWS by hand (infra/local/README.md)"

build:
	cargo build --workspace --bins

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit: local-venv
	@if cargo nextest --version >/dev/null 2>&1; then cargo nextest run --workspace; else cargo test --workspace; fi

test: lint unit

# The local AWS's pinned Python environment (moto + extensions, ministack).
local-venv: $(LOCAL)/.venv/.installed

$(LOCAL)/.venv/.installed: $(LOCAL)/requirements.txt
	python3 -m venv $(LOCAL)/.venv
	$(LOCAL_PY) -m pip install --quiet --disable-pip-version-check -r $(LOCAL)/requirements.txt
	touch $@

local-up: local-venv
	cd $(LOCAL) && .venv/bin/python -m localaws up

local-down:
	@if [ -x $(LOCAL_PY) ]; then cd $(LOCAL) && .venv/bin/python -m localaws down; fi

# Seeds the running local AWS (make local-up first) and prints what it made.
local-seed: local-venv
	. $(LOCAL)/.run/env && cd $(LOCAL) && .venv/bin/python -m localaws seed --endpoint $$LOCALAWS_MOTO

$(VENV)/.build-tools: infra/build-requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r infra/build-requirements.txt
	touch $@

# cargo-lambda finds the PyPI zig through `python3 -m ziglang`, so the venv goes first on PATH.
package: $(VENV)/.build-tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --release --x86-64 --output-format zip \
		$(foreach f,$(FUNCTIONS),--bin $(f)) --lambda-dir $(DIST)
	@for f in $(FUNCTIONS); do ls -l $(DIST)/$$f/bootstrap.zip | awk -v f=$$f '{printf "%-18s %9d bytes\n", f, $$5}'; done

demo:
	@echo "make demo runs a rollout on the local AWS, which is not built yet (issues 3 and 4)." >&2
	@exit 1

clean:
	rm -rf $(DIST)
