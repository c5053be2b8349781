# Task runner of the cart lakehouse. `make run` and `make test` are the README's two commands:
# each installs what is missing (uv, the locked environment) and then does its job.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)

# Python writes the bytecode of what it imports (into .venv and the ignored __pycache__ folders)
# even where the environment sets PYTHONDONTWRITEBYTECODE: without it every process compiles every
# module it imports from source, every time (the tests start hundreds: pytest's workers, moto
# servers, the API, Dagster's code server and run workers, dbt; Dagster's definitions alone load in
# 6 s from bytecode and 13.5 s from source on this machine)
unexport PYTHONDONTWRITEBYTECODE

.DEFAULT_GOAL := help
.PHONY: help setup run test test-quick lint format typecheck pytest browser demo template package audit bench bench-ingest bench-local-ingest bench-lakehouse bench-local-aws bench-freshness bench-kpis clean dbt

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: .venv/.synced ## Install uv (if missing) and the locked environment

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || { echo "Installing uv with pip..."; python3 -m pip install --quiet --disable-pip-version-check uv; }
	@$(UV) sync --locked
	@touch $@

DBT_SOURCES := $(shell find dbt_project \( -path dbt_project/target -o -path dbt_project/logs \) -prune -o \( -name '*.sql' -o -name '*.yml' \) -print)
DBT_MANIFEST := dbt_project/target/manifest.json

dbt: $(DBT_MANIFEST) ## Prepare the dbt manifest of gold (dbt parse; Dagster reads it)

$(DBT_MANIFEST): .venv/.synced $(DBT_SOURCES) contracts/lakehouse.odcs.yaml contracts/analytics.odcs.yaml
	@$(UV) run --locked python -m cart_lakehouse.dbt_contract --check
	@cd dbt_project && $(UV) run --locked dbt parse --quiet --profiles-dir .
	@echo "dbt manifest ready: $(DBT_MANIFEST)"

run: setup $(DBT_MANIFEST) ## Start the whole system locally (ARGS=--fresh starts empty); Ctrl-C snapshots and stops it
	@$(UV) run --locked cart-dev $(ARGS)

# the type check runs beside pytest rather than before it: mypy on a clean clone (no cache) takes
# about 90 s of one core, and the suite leaves about 0.8 of this machine's 2 cores idle waiting on
# servers, queues and Spark (measured: pytest alone 9m05s wall for 10m51s of CPU). A failure of
# either fails make test once both have finished
test: setup lint ## Lint, then type-check and run every test side by side
	@$(MAKE) --no-print-directory -j2 typecheck pytest

lint: setup ## ruff lint and format check, actionlint on the GitHub Actions workflows
	@$(UV) run --locked ruff check .
	@$(UV) run --locked ruff format --check .
	@$(UV) run --locked actionlint && echo "actionlint: no findings"

format: setup ## Format the code with ruff
	@$(UV) run --locked ruff format .
	@$(UV) run --locked ruff check --fix .

typecheck: setup ## mypy (strict)
	@$(UV) run --locked mypy

# two workers on this machine's two cores: most tests wait on a server, a queue or a Spark job, so
# they overlap well; worksteal evens out the few long end-to-end tests. A third worker was no faster
# (quiet machine, 584 tests: 2 workers 545 s, 3 workers 569 s)
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0 1,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist worksteal)

browser: ## Headless Chromium and chromedriver for the dashboard's browser test (Debian packages), when missing
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing chromium and chromium-driver (about a minute)..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "The browser test needs: sudo apt-get install -y chromium chromium-driver" >&2; exit 1; fi

pytest: setup $(DBT_MANIFEST) browser ## pytest only, in parallel (ARGS="-k name" to select; PYTEST_WORKERS=1 for one process)
	@$(UV) run --locked pytest $(PYTEST_PARALLEL) $(ARGS)

test-quick: setup $(DBT_MANIFEST) browser ## Every test but the long end-to-end ones (marker e2e), in parallel: a few minutes
	@$(UV) run --locked pytest $(PYTEST_PARALLEL) -m "not e2e and not fuzz_random" $(ARGS)

demo: setup $(DBT_MANIFEST) ## Headless end-to-end demo with faults; prints gold KPIs and the zero-loss ledger
	@$(UV) run --locked cart-demo $(ARGS)

template: setup ## Write deploy/template.yaml (CloudFormation, from cart_aws/resources.py) and lint it with cfn-lint
	@$(UV) run --locked python -m cart_aws.template
	@$(UV) run --locked cfn-lint deploy/template.yaml && echo "cfn-lint: no errors or warnings"

package: setup ## Build the Lambda packages dist/lambda/api.zip and worker.zip (the ingest service and its locked runtime dependencies for Lambda) and print their sizes
	@$(UV) run --locked python -m cart_dev.package $(ARGS)

# What is deployed: the Lambda packages (the project's dependencies) and the Dagster code location
# image (the lakehouse extra); the local and dev tools are not. Exported from the lock, so the audit
# sees exactly the locked versions; --no-deps: the export is the whole closure, nothing to resolve.
AUDIT_REQUIREMENTS := .local/audit/requirements.txt
AUDIT_LOG := .local/audit/pip-audit.log
# Advisory ids accepted after review, each justified in docs/operations.md (pip-audit --ignore-vuln)
AUDIT_IGNORE ?=
# --strict: a package the vulnerability service could not be asked about fails the audit (without
# it pip-audit skips the package with a warning and still says "No known vulnerabilities found")

audit: setup ## Check the locked dependencies of the Lambda packages and the lakehouse image for known vulnerabilities (pip-audit; needs pypi.org)
	@mkdir -p $(dir $(AUDIT_REQUIREMENTS))
	@$(UV) export --locked --no-dev --extra lakehouse --no-emit-project --format requirements.txt --quiet --output-file $(AUDIT_REQUIREMENTS)
	@echo "Auditing the $$(grep -c '^[A-Za-z0-9]' $(AUDIT_REQUIREMENTS)) packages pinned in $(AUDIT_REQUIREMENTS) with pip-audit..."
	@$(UV) run --locked --quiet pip-audit --strict --no-deps --disable-pip --progress-spinner off \
	  $(foreach id,$(AUDIT_IGNORE),--ignore-vuln $(id)) --requirement $(AUDIT_REQUIREMENTS) $(ARGS) >$(AUDIT_LOG) 2>&1; \
	rc=$$?; grep -v -e '--no-deps is supported' -e 'Consider using a tool like' $(AUDIT_LOG); \
	if [ $$rc -eq 0 ]; then :; \
	elif grep -q -E 'Found [0-9]+ known vulnerabilit' $(AUDIT_LOG); then \
	  echo "make audit: known vulnerabilities in the locked dependencies (above): upgrade them in uv.lock, or justify each in docs/operations.md and add its id to AUDIT_IGNORE in the Makefile" >&2; exit 1; \
	else \
	  echo "make audit: NOT CHECKED. pip-audit could not ask its vulnerability service about every locked package (above)." >&2; \
	  echo "It needs https://pypi.org/pypi/<name>/<version>/json (or https://api.osv.dev with ARGS='--vulnerability-service osv');" >&2; \
	  echo "a mirror or proxy that does not serve PyPI's JSON API answers 404. Run it where pypi.org is reachable (CI's audit job does)." >&2; exit 1; \
	fi

bench: bench-ingest bench-local-ingest bench-lakehouse bench-local-aws bench-freshness bench-kpis ## Run the benchmarks and print their tables (ARGS="--write docs/benchmarks.md")

bench-ingest: setup ## Ingest benchmark: API vs moto, batched vs single publish, worker batching, the API against a stub SNS (ARGS="--phases d": that alone)
	@$(UV) run --locked python -m bench.ingest $(ARGS)

bench-local-ingest: setup ## Local ingest benchmark: 2000 purchases at 50/s (and 150/s) through the API, queue depth and worker lag over time, 1/2/4 worker threads
	@$(UV) run --locked python -m bench.local_ingest $(ARGS)

bench-lakehouse: setup $(DBT_MANIFEST) ## Lakehouse benchmark: one hour of 100k bronze→gold, single-run vs per-hour backfill
	@$(UV) run --locked python -m bench.lakehouse $(ARGS)

bench-freshness: setup $(DBT_MANIFEST) ## Freshness benchmark: purchases posted in an hour's last minute, time from its end to gold
	@$(UV) run --locked python -m bench.freshness $(ARGS)

bench-local-aws: setup ## Local AWS benchmark: stock vs patched moto (DynamoDB writes, SQS at depth), 100k restored
	@$(UV) run --locked python -m bench.local_aws $(ARGS)

bench-kpis: setup ## File-drop benchmark: 1M order items from landing/ to both KPI tables, then re-dropped (ARGS="--items N")
	@$(UV) run --locked python -m bench.kpis $(ARGS)

clean: ## Remove local state (local AWS snapshot, Dagster instance, lake, logs, caches, dbt target)
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache dbt_project/target dbt_project/logs
