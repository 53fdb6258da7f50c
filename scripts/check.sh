#!/usr/bin/env bash
# The project's checks: lint, format, type check, default test suite (slow tests excluded).
set -uo pipefail
cd "$(dirname "$0")/.."
ruff check src tests bench scripts run.py || exit 1
ruff format --check src tests bench scripts run.py || exit 1
mypy || exit 1
python -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "no tests collected"; exit 0; fi
exit "$rc"
