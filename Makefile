# The two quick-start commands are `make serve` and `make test`; each sets up
# whatever it needs first (a virtualenv from requirements.lock, npm packages
# from web/package-lock.json, the web bundle).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test check generate lock clean

serve: $(STAMP)
	$(BIN)/library serve --demo

test: $(STAMP) check
	$(BIN)/pytest

# Static checks: the contract, generated code, lint, format and types.
check: $(STAMP)
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/buf generate
	git diff --exit-code -- server/gen || (echo "generated code is stale: run 'make generate' and commit" && exit 1)
	test -z "$$(git status --porcelain -- server/gen)" || (echo "untracked generated files: run 'make generate' and commit" && exit 1)
	if git rev-parse --verify -q HEAD~1 >/dev/null; then $(BIN)/buf breaking --against '.git#ref=HEAD~1'; fi
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy server tests

generate: $(STAMP)
	$(BIN)/buf generate

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Re-pin after editing pyproject.toml dependencies (needs uv: pip install uv).
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV)
