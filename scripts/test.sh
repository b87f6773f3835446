#!/usr/bin/env bash
# Every test: lint, type check, then unit, integration and e2e tiers.
# With CI=true a missing dependency fails a test instead of skipping it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check src tests bench
echo "== mypy" && mypy
echo "== guest image (built once, shared by the tests)" && python -m tests.prebuild
echo "== pytest"
exec pytest tests "$@"
