#!/usr/bin/env bash
# The main job: set up .venv, run the quickstart study (2 short CPU trials, each scored by the
# evaluation classifier over a guidance grid), and write its report under reports/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export WANDB_SILENT=true
exec .venv/bin/ddpm sweep sweeps/quickstart.yaml "$@"
