# The two commands a newcomer needs:
#   make run    start the gateway on its embedded Asterisk and show audio flowing
#   make test   run every check CI runs
# Everything is installed from this repository's own files (pyproject.toml,
# uv.lock, package.json, package-lock.json).

UV_VERSION := 0.13.9
UV := python3 -m uv
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup run demo test lint typecheck generate check-generated proto-lint

setup: .venv/.synced node_modules/.installed

.venv/.synced: pyproject.toml uv.lock sdk/python/pyproject.toml
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q "uv==$(UV_VERSION)"
	$(UV) sync --frozen --quiet
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --silent --no-audit --no-fund
	@touch $@

run: setup
	$(UV) run --frozen python scripts/run.py

demo: setup
	$(UV) run --frozen python scripts/run.py --once

generate: setup
	$(UV) run --frozen python scripts/generate.py

check-generated: setup
	$(UV) run --frozen python scripts/generate.py --check

proto-lint: setup
	npx --no-install buf lint
	npx --no-install buf format --exit-code --diff

lint: setup
	$(UV) run --frozen ruff check server sdk/python tests bench scripts
	$(UV) run --frozen ruff format --check server/mediastream/api server/mediastream/asterisk

typecheck: setup
	$(UV) run --frozen mypy

test: setup check-generated proto-lint lint typecheck
	$(UV) run --frozen pytest
