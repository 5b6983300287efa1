#!/usr/bin/env bash
# The README's main command: set up, then run the lab demo (hypervisors, VMs, real packets).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m lab.demo "$@"
