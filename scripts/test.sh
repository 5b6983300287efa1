#!/usr/bin/env bash
# The README's test command: set up, then run every test (unit and integration on the real lab).
# `scripts/test.sh -m "not integration"` runs the unit tests alone in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
