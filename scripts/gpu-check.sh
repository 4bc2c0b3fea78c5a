#!/usr/bin/env bash
# The GPU check (issue 15): one script, about 6-7 minutes on one H200, everything in one folder.
#
#   scripts/gpu-check.sh [--dry-run] [OUT_DIR]        (OUT_DIR: $OUT when set, else gpu-check-<time>/)
#   DDPM_GPU_CHECK_DRY=1 scripts/gpu-check.sh ...      (the same as --dry-run)
#
# Runs from the source tree without installing the project (PYTHONPATH=repo root) on whatever python3 and
# torch the machine has (PYTHON=... to choose); W&B is disabled and never imported. Stages, each under its own
# time limit, each recorded in summary.json whatever happens to the others:
#   cuda-tests      pytest tests/test_engine_cuda.py tests/test_engine_unet.py (the CUDA tests skip on CPU)
#   bench           ddpm bench --widths 32,64,128 --cuda-graphs --full-grid, 400-step DDPM on both paths
#   seed-epochs     the seed's 10 epochs on the fast path (all 60k images, as the seed), per-epoch table
#                   beside the seed notebook's losses (epoch 10: train 0.0598, test 0.0626)
#   time-to-quality ddpm bench --time-to-quality benchmarks/time-to-quality-gpu.yaml: accuracy and FID (95%
#                   intervals, n each) on the validation split at fixed intervals of training seconds, under one
#                   budget: the seed recipe and the sweeps' best CPU recipe (eps and v/Min-SNR), fast path
#   sweep-1w/-4w    the same width-16 study with 1 and with 4 workers sharing the GPU: trials/hour
# The sweep stages need optuna (not on the GPU machine): when it is not importable and a .whl/ folder sits
# in the repo root (.gitignore'd), its wheels are installed into the scratch folder first; otherwise the
# sweep stages are skipped with a message. Prepare .whl/ here, once (5.4 MB; the versions CI's venv has; the
# GPU image already holds numpy, packaging, tqdm, pyyaml, typing-extensions and markupsafe, the rest of
# their Requires-Dist; sqlalchemy 2.1 needs greenlet only for asyncio):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl optuna==5.0.0 alembic==1.20.1 sqlalchemy==2.1.9 mako==1.4.3 colorlog==6.12.0
# and name .whl in the device call's carry list.
# Result files (at most 8, the device tool's limit): gpu-check.log, summary.json, bench.json, bench.md,
# seed-epochs.md, seed-grid.png, time-to-quality.csv, time-to-quality.png. Scratch (runs, studies) is
# a temporary folder, removed at the end (KEEP_WORK=1 keeps it).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DRY=${DDPM_GPU_CHECK_DRY:-0}
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT_DIR=${OUT:-${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}}
mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
[[ "${KEEP_WORK:-0}" == 1 ]] || trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" DDPM_PROGRESS=0 WANDB_MODE=disabled WANDB_SILENT=true \
       PYTHONUNBUFFERED=1
LOG=$OUT_DIR/gpu-check.log
STAGES=$WORK/stages.tsv
T0=$(date +%s) BUDGET=${GPU_CHECK_BUDGET_S:-460}   # the whole check stays inside the device tool's 10-minute call
: >"$LOG"; : >"$STAGES"
cd "$REPO"

say() { echo "$*" | tee -a "$LOG"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# stage NAME LIMIT_S COMMAND...: run under a time limit (cut to what is left of GPU_CHECK_BUDGET_S), output to
# the log; JSON lines ({...}) it prints become the stage's result in summary.json
stage() {
  local name=$1 limit=$2 start rc status left
  shift 2
  left=$(( BUDGET - ($(date +%s) - T0) ))
  if (( left < 20 )); then
    say "=== $name: over budget: the time budget (GPU_CHECK_BUDGET_S=$BUDGET s) is spent"
    printf '%s\tover-budget\t0\t0\t\n' "$name" >>"$STAGES"
    return
  fi
  (( limit > left )) && limit=$left
  say "=== $name (limit ${limit}s) $(date -u +%H:%M:%S): $*"
  start=$(date +%s.%N)
  timeout --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$LOG" >"$WORK/$name.out"
  rc=${PIPESTATUS[0]}
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$(elapsed "$start")" \
    "$WORK/$name.out" >>"$STAGES"
  say "=== $name: $status (rc $rc)"
}

skip() {  # skip NAME WHY
  say "=== $1: skipped: $2"
  printf '%s\tskipped\t0\t0\t\n' "$1" >>"$STAGES"
}

say "gpu-check $(date -u +%FT%TZ) repo=$REPO commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo ?) dry=$DRY"
say "$("$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))' 2>&1)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 | tee -a "$LOG"

# optuna for the sweep stages: already importable, or from carried wheels, or not at all
if ! "$PY" -c 'import optuna' 2>/dev/null && compgen -G "$REPO/.whl/*.whl" >/dev/null; then
  say "installing the carried wheels: $(cd "$REPO/.whl" && echo *.whl)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" "$REPO"/.whl/*.whl \
    2>&1 | tee -a "$LOG"
  export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi
"$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null || [[ "$DRY" == 1 ]] ||
  say "warning: no CUDA device here: the full check would measure this CPU for a long time (--dry-run is the CPU check)"
HAVE_OPTUNA=0
"$PY" -c 'import optuna' 2>/dev/null && HAVE_OPTUNA=1

if [[ "$DRY" == 1 ]]; then  # tiny sizes on one CPU thread: checks that every stage still runs, measures nothing
  export OMP_NUM_THREADS=1
  TINY=(data.limit=256 data.test_limit=64 data.val_limit=64 model.num_feat=8 diffusion.T=20 diffusion.beta_T=0.5
        train.batch_size=64 sample.steps=null)
  TESTS=(tests/test_engine_cuda.py)
  BENCH=(--quick --widths 8 --train-steps 2 --repeats 1 --grid-images 10 --fast-sampler ddpm --fast-steps 20
         --threads 1 "${TINY[@]}")
  SEED=("${TINY[@]}" train.epochs=2)
  TTQ_FILE=$WORK/time-to-quality-tiny.yaml   # two tiny entries, 2 s of training each, n = 20
  TTQ_TINY=$(IFS=,; echo "${TINY[*]}")
  cat >"$TTQ_FILE" <<EOF
budget_s: 2
every_s: 1
n: 20
sampler: ddim
steps: 5
eta: 1.0
omegas: [2.0]
split: val
entries:
  - {label: seed-fast, config: $REPO/experiments/seed.yaml, overrides: [$TTQ_TINY, train.path=fast]}
  - {label: recipe, config: $REPO/reports/recipe/best_config.yaml, overrides: [$TTQ_TINY, train.epochs=100]}
EOF
  SWEEP_RUNS="1" SWEEP_N1=1   # one in-process trial (N workers: tests/test_sweeps_*.py run `--workers 2`)
  SWEEP_OVERRIDES="{data.limit: 256, data.test_limit: 64, data.val_limit: 64, model.num_feat: 8, diffusion.T: 20,
    diffusion.beta_T: 0.5, train.epochs: 1, train.batch_size: 64, train.grid_every: 0}"
  SWEEP_GUIDANCE="{omegas: [2], n: 20, sampler: ddim, steps: 5}"
  LIMIT_SHORT=120 LIMIT_LONG=120
else
  TESTS=(tests/test_engine_cuda.py tests/test_engine_unet.py)
  BENCH=(--widths 32,64,128 --train-steps 20 --repeats 2 --fast-sampler ddpm --fast-steps 400)
  SEED=(train.epochs=10)
  TTQ_FILE=benchmarks/time-to-quality-gpu.yaml
  SWEEP_RUNS="1 4" SWEEP_N1=500 SWEEP_N=500 SWEEP_TIMEOUT=40   # trials started in 40 s, each run to its end
  SWEEP_OVERRIDES="{data.limit: 15000, data.test_limit: 1000, data.val_limit: 1000, model.num_feat: 16,
    train.epochs: 1, train.batch_size: 128, train.lr: 2.0e-3, train.grid_every: 0}"
  SWEEP_GUIDANCE="{omegas: [2], n: 200, sampler: ddim, steps: 25}"
  LIMIT_SHORT=150 LIMIT_LONG=170
fi

# 1. the CUDA tests
stage cuda-tests "$LIMIT_SHORT" "$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}"

# 2. faithful against fast path at each width, CUDA graphs, whole 400-step grids
stage bench "$LIMIT_SHORT" "$PY" -m ddpm bench "${BENCH[@]}" --cuda-graphs --full-grid --out "$OUT_DIR/bench.json"

# 3. the seed's 10 epochs on the fast path (data.val_size=0: the seed trained on all 60,000 images)
stage seed-epochs-train "$LIMIT_SHORT" "$PY" -m ddpm train experiments/seed.yaml "${SEED[@]}" data.val_size=0 \
  train.path=fast train.grid_every=10 tracking.wandb=disabled out_dir="$WORK/runs" name=seed-fast
stage seed-epochs "$LIMIT_SHORT" "$PY" scripts/gpu_check/seed_epochs.py "$WORK/runs/seed-fast" "$OUT_DIR/seed-epochs.md"
cp "$(ls "$WORK"/runs/seed-fast/grids/*.png 2>/dev/null | tail -1)" "$OUT_DIR/seed-grid.png" 2>/dev/null || true

# 4. time to quality: the seed recipe and the sweeps' best CPU recipe on the fast path, same budget, sampler and n
stage time-to-quality "$((LIMIT_LONG + LIMIT_SHORT))" "$PY" -m ddpm bench --time-to-quality "$TTQ_FILE" --out "$WORK/ttq"
cp "$WORK/ttq/points.csv" "$OUT_DIR/time-to-quality.csv" 2>/dev/null || true
cp "$WORK/ttq/time-to-quality.png" "$OUT_DIR/time-to-quality.png" 2>/dev/null || true
stage ttq-summary 30 "$PY" -c 'import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({k: {**{t: e[t]["seconds"] for t in ("accuracy", "fid", "both")}, "last_seconds": e["last_seconds"]}
                  for k, e in s["entries"].items() if e.get("last_seconds") is not None}))' "$WORK/ttq/summary.json"

# 5. one study, 1 worker then N workers sharing the device: trials/hour
if [[ "$HAVE_OPTUNA" == 1 ]]; then
  for w in $SWEEP_RUNS; do
    mkdir -p "$WORK/sweep-$w"
    cat >"$WORK/sweep-$w/sweep.yaml" <<EOF
study: gpu-check-workers
base: $REPO/experiments/seed.yaml
overrides: $SWEEP_OVERRIDES
space:
  train.lr: {type: float, low: 5.0e-4, high: 3.0e-3, log: true}
guidance: $SWEEP_GUIDANCE
objectives: [{metric: fid, direction: minimize}]
sampler: {name: random, seed: $w}
pruner: none
n_trials: $([[ $w == 1 ]] && echo "$SWEEP_N1" || echo "${SWEEP_N:-}")
timeout: ${SWEEP_TIMEOUT:-null}
storage: sqlite:///$WORK/sweep-$w/study.db
report: false
EOF
    start=$(date +%s.%N)
    (cd "$WORK/sweep-$w" && stage "sweep-${w}w-run" "$LIMIT_SHORT" "$PY" -m ddpm sweep sweep.yaml --workers "$w" \
      --no-wandb --no-report --no-confirm)
    wall=$(elapsed "$start")
    stage "sweep-${w}w" 60 "$PY" scripts/gpu_check/sweep_rate.py "sqlite:///$WORK/sweep-$w/study.db" \
      gpu-check-workers "$w" "$wall"
  done
else
  skip sweep "optuna is not importable and no .whl/ folder with its wheels is in $REPO (see this script's header)"
fi

"$PY" scripts/gpu_check/summary.py "$STAGES" "$OUT_DIR/summary.json" "$DRY" 2>&1 | tee -a "$LOG"
ok=${PIPESTATUS[0]}
say "wrote $(cd "$OUT_DIR" && ls | tr '\n' ' ')"
exit "$ok"   # 0 when every stage ran (or was skipped for want of optuna), else 1: see summary.json
