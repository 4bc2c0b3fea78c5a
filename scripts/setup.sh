#!/usr/bin/env bash
# Create .venv and install the project with its extras (torch comes from this machine's disk via pip).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[report,postgres,dashboard,s3,ray,slurm,test]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c "import ddpm, torch, optuna, wandb, matplotlib" || { echo "setup failed: see pip output above" >&2; exit 1; }
