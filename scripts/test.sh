#!/usr/bin/env bash
# Set up everything and run the test suite (the README's test command; CI's .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
if [ -f .postgres-url ] && [ -z "${DDPM_TEST_POSTGRES:-}" ]; then
  export DDPM_TEST_POSTGRES=$(cat .postgres-url)
fi
export WANDB_SILENT=true WANDB_DISABLE_CODE=true
exec .venv/bin/python -m pytest "$@"
