# ami-rollout. Builds share one target directory outside the clone, so every checkout and CI run
# on this machine reuses the compiled AWS SDKs (a cold build takes many minutes on 2 cores).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/ami-rollout/target
# Clippy runs inside the build: clippy-driver wraps rustc for the workspace's own crates only, so
# `make lint`, the unit tests and the end-to-end binaries share one compilation of the AWS SDKs
# (`cargo clippy` would check them all a second time, about 10 minutes cold on 2 cores). A lint
# finding fails the build. CLIPPY_ARGS is how cargo-clippy hands its arguments to the driver.
export RUSTC_WORKSPACE_WRAPPER := clippy-driver
export CLIPPY_ARGS := -D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# End-to-end workers: each runs whole test classes, each class with its own local AWS. One more
# than the cores: a scenario spends most of its time waiting on the local AWS's scaled clocks
# (measured on 2 cores: e2e 13:09 with two workers, 8:39 with three).
E2E_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))
FUNCTIONS := resolve-ami update-template start-refresh check-ecs-health rollback hold-targets distribute-ami
VENV := .venv
DIST := dist
LOCAL := infra/local
LOCAL_PY := $(LOCAL)/.venv/bin/python
CHECK := infra/check
SAM_VERSION := 1.170.0

.PHONY: help build test lint fmt unit e2e check validate deploy package demo screenshot bench clean local-venv check-tools local-up local-down local-seed local-deploy

help:
	@echo "make demo     the main job: a rollout and an automatic rollback on the local AWS"
	@echo "make test     formatting, clippy, ASL linters, unit + integration + end-to-end tests (CI)"
	@echo "make build    debug build of the functions and the tests"
	@echo "make e2e      the end-to-end scenarios only (state machine on local Step Functions)"
	@echo "make screenshot  the demo, saving its first `ami-rollout watch` as docs/watch.svg (the README picture)"
	@echo "make package  seven release bootstrap.zip files in $(DIST)/ (cargo-lambda, x86_64)"
	@echo "make bench    the DESIGN §8 numbers: zip sizes, cold start and memory vs Python, planning 1,000 groups"
	@echo "make validate cfn-lint, checkov, parliament and the IAM permission-coverage test on infra/aws"
	@echo "make deploy   package, then sam deploy (guided the first time)"
	@echo "make local-up / local-seed / local-deploy / local-down   the local AWS by hand (infra/local/README.md)"

# Binaries and tests in one invocation share one feature set, so the AWS SDKs compile once
# (a bins-only build would resolve features without the dev-dependencies and compile them again).
build:
	cargo build --workspace --all-targets

fmt:
	cargo fmt --all

# The layers: no circle between a crate's modules, no crate on a function crate, the planner's
# functions short (tests/layers/modules.py; why not cargo-modules is said there).
lint:
	cargo fmt --all -- --check
	cd tests/layers && python3 -m unittest -q test_modules
	cargo build --workspace --all-targets

unit: local-venv
	@if cargo nextest --version >/dev/null 2>&1; then cargo nextest run --workspace; else cargo test --workspace; fi
	$(LOCAL_PY) -m pytest $(LOCAL)/tests -n $(E2E_WORKERS) --dist loadfile -p no:cacheprovider -q

# The ASL linters see the definition with its substitutions filled in (render_asl.py).
check: check-tools validate
	$(CHECK)/.venv/bin/python $(CHECK)/render_asl.py >/dev/null
	$(CHECK)/.venv/bin/statelint --ignore=FLOAT $(CHECK)/.rendered/statelint/*.asl.json
	cd $(CHECK) && for f in .rendered/*.asl.json; do node_modules/.bin/asl-validator --json-path $$f || exit 1; done

# Timing is measured here, never asserted in a test. Uses the release zips of `make package`.
bench: package local-venv tests/bench/.venv/.installed
	$(LOCAL_PY) tests/bench/bench.py

tests/bench/.venv/.installed: tests/bench/requirements.txt
	python3 -m venv tests/bench/.venv
	tests/bench/.venv/bin/pip install --quiet --disable-pip-version-check -r tests/bench/requirements.txt
	touch $@

# Templates: cfn-lint, checkov and parliament (an IAM linter; suppressions are justified in the
# templates, with their source), and the test that every AWS call in a function's code is allowed
# by its role.
validate: check-tools
	$(CHECK)/.venv/bin/cfn-lint infra/aws/*.yaml
	$(CHECK)/.venv/bin/checkov -d infra/aws --framework cloudformation --quiet --compact --skip-download
	$(CHECK)/.venv/bin/python $(CHECK)/iam_lint.py
	$(CHECK)/.venv/bin/python -m unittest discover -s tests/iam

# First use: guided (asks for the stack name, region and parameters, saves samconfig.toml).
deploy: package $(VENV)/.sam
	@if [ -f samconfig.toml ]; then $(VENV)/bin/sam deploy -t infra/aws/template.yaml; \
	else $(VENV)/bin/sam deploy -t infra/aws/template.yaml --guided --capabilities CAPABILITY_IAM; fi

$(VENV)/.sam: infra/build-requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_VERSION)
	touch $@

e2e: local-venv build
	$(LOCAL_PY) -m pytest tests/e2e -n $(E2E_WORKERS) --dist loadscope -p no:cacheprovider -q

# Each phase in turn, then what each took.
test:
	@tests/phases lint check unit e2e

demo: local-venv build
	cd $(LOCAL) && .venv/bin/python -m localaws.demo

# The README's picture: the demo, its first watch saved as docs/watch.svg.
screenshot: local-venv build
	cd $(LOCAL) && .venv/bin/python -m localaws.demo --svg $(CURDIR)/docs/watch.svg

# The local AWS's pinned Python environment (moto + extensions, ministack).
local-venv: $(LOCAL)/.venv/.installed

$(LOCAL)/.venv/.installed: $(LOCAL)/requirements.txt
	python3 -m venv $(LOCAL)/.venv
	$(LOCAL_PY) -m pip install --quiet --disable-pip-version-check -r $(LOCAL)/requirements.txt
	touch $@

check-tools: $(CHECK)/.venv/.installed $(CHECK)/node_modules/.installed

$(CHECK)/.venv/.installed: $(CHECK)/requirements.txt
	python3 -m venv $(CHECK)/.venv
	$(CHECK)/.venv/bin/pip install --quiet --disable-pip-version-check -r $(CHECK)/requirements.txt
	touch $@

$(CHECK)/node_modules/.installed: $(CHECK)/package.json $(CHECK)/package-lock.json
	cd $(CHECK) && npm ci --no-audit --no-fund --silent
	touch $@

local-up: local-venv
	cd $(LOCAL) && .venv/bin/python -m localaws up

local-down:
	@if [ -x $(LOCAL_PY) ]; then cd $(LOCAL) && .venv/bin/python -m localaws down; fi

# Deploys the stack (functions, state machine, roles, table, bucket) to the running local AWS.
local-deploy: build local-venv
	@. $(LOCAL)/.run/env && cd $(LOCAL) && .venv/bin/python -m localaws deploy

# Seeds the running local AWS (make local-up first) and prints what it made (again, when seeded).
local-seed: local-venv
	@. $(LOCAL)/.run/env && cd $(LOCAL) && .venv/bin/python -m localaws seed --endpoint $$LOCALAWS_MOTO

$(VENV)/.build-tools: infra/build-requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r infra/build-requirements.txt
	touch $@

# cargo-lambda finds the PyPI zig through `python3 -m ziglang`, so the venv goes first on PATH.
package: $(VENV)/.build-tools
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" RUSTC_WORKSPACE_WRAPPER= cargo lambda build --release --x86-64 --output-format zip \
		$(foreach f,$(FUNCTIONS),--bin $(f)) --lambda-dir $(DIST)
	@for f in $(FUNCTIONS); do ls -l $(DIST)/$$f/bootstrap.zip | awk -v f=$$f '{printf "%-18s %9d bytes\n", f, $$5}'; done

clean:
	rm -rf $(DIST)
