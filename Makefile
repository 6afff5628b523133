# The two quick-start commands are `make serve` and `make test`; each sets up
# whatever it needs first (a virtualenv from requirements.lock, npm packages
# from web/package-lock.json, the web bundle).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# buf finds protoc-gen-py and protoc-gen-connectrpc on PATH, in the venv.
export PATH := $(abspath $(BIN)):$(PATH)

WEB := web
WEB_DEPS := $(WEB)/node_modules/.installed
WEB_BUILD := $(WEB)/dist/index.html
WEB_SOURCES := $(WEB)/index.html $(WEB)/build.mjs $(WEB)/tsconfig.json \
	$(wildcard $(WEB)/src/*.ts $(WEB)/src/*.css $(WEB)/src/gen/*/*/*.ts)

.PHONY: serve test system-deps check generate web bench lock clean

serve: $(STAMP) $(WEB_BUILD)
	$(BIN)/library serve --demo

test: $(STAMP) system-deps check $(WEB_BUILD)
	$(BIN)/pytest

# The tests drive Debian's Chromium, PostgreSQL server binaries and nginx (the
# README's load-balancer recipe); as root, install them.
system-deps:
	@if ! command -v chromium >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	    || ! [ -x /usr/sbin/nginx ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium, postgresql and nginx with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium postgresql nginx >/dev/null; \
	  else echo "the tests need Debian's chromium, postgresql and nginx: sudo apt-get install chromium postgresql nginx"; exit 1; fi; \
	fi

# Static checks: the contract, generated code, lint, format and types.
check: $(STAMP) $(WEB_DEPS)
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/buf generate
	git diff --exit-code -- server/gen web/src/gen || (echo "generated code is stale: run 'make generate' and commit" && exit 1)
	test -z "$$(git status --porcelain -- server/gen web/src/gen)" || (echo "untracked generated files: run 'make generate' and commit" && exit 1)
	# The contract must stay compatible with the last landed state of main (the previous commit).
	if git rev-parse --verify -q HEAD~1 >/dev/null; then $(BIN)/buf breaking --against '.git#ref=HEAD~1'; \
	else echo "buf breaking: no previous commit to compare with (first commit or shallow clone)"; fi
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy server tests
	cd $(WEB) && npm run --silent typecheck

generate: $(STAMP) $(WEB_DEPS)
	$(BIN)/buf generate

# The web page: npm packages exactly as locked, then one minified bundle in web/dist.
web: $(WEB_BUILD)

$(WEB_DEPS): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund
	touch $@

$(WEB_BUILD): $(WEB_DEPS) $(WEB_SOURCES)
	cd $(WEB) && npm run --silent build

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# GetBook, WatchBooks fan-out, durable writes and a snapshot flood against a bare ASGI app and a
# minimal connectrpc handler; then each telemetry setting against the service before telemetry;
# then PostgreSQL's write and fan-out figures, if it is installed. Each prints ratios measured in its run.
bench: $(STAMP)
	@command -v wrk >/dev/null || { echo "bench needs wrk: apt-get install -y wrk"; exit 1; }
	$(BIN)/python bench/run.py --cases getbook,fanout,writes
	# The flood's case is an 8,000-book catalogue: fresh servers, as the writes
	# before it leave thousands more books behind.
	$(BIN)/python bench/run.py --cases flood
	$(BIN)/python bench/telemetry.py
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then $(BIN)/python bench/pg_writes.py; \
	else echo "PostgreSQL write figures skipped: apt-get install -y postgresql"; fi

# Re-pin after editing pyproject.toml dependencies (needs uv: pip install uv).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) $(WEB)/node_modules $(WEB)/dist
