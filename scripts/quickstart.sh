#!/usr/bin/env bash
# End to end on CIFAR-10: full-data run with training dynamics -> importance scores ->
# coresets by random, forgetting, AUM, EL2N, entropy, Moderate and CCS -> table and figures.
#
#   bash scripts/quickstart.sh                      # profile cpu without a GPU, gpu with one
#   bash scripts/quickstart.sh --profile smoke      # a taste in under 2 minutes
#   bash scripts/quickstart.sh --rates 0.7,0.9 --seeds 0,1 --data-dir ~/data
#   bash scripts/quickstart.sh --label-noise 0.2    # 20% of the labels flipped first
#   bash scripts/quickstart.sh --methods random,ccs,d2,kcenter --beta 0.1,0.3,0.5
#   bash scripts/quickstart.sh --val-size 1000 --beta 0.1,0.3,0.5  # the honest protocol too
#
# Profiles (pruning rate 0.9 keeps 10% of the training set):
#   cpu   ResNet-20, a fixed 10,000-example subset, 10 epochs of dynamics, coresets trained
#         200 iterations of batch 128 (19 minutes on 2 idle cores at one rate)
#   gpu   ResNet-18, the full 50,000 training set, 200 epochs of dynamics (the paper's),
#         coresets trained 10,000 iterations of batch 256
#   smoke ResNet-20, a 1,000-example subset, 2 epochs, coresets trained 20 iterations,
#         tested on 1,000 test images, methods random, ccs and accumulated_margin only
#         (a taste, not a result)
# --methods picks from: random ccs forgetting accumulated_margin el2n entropy moderate
# (the default) and the feature-space peers d2 kcenter. --beta is CCS's hard-cut ratio; a
# list runs CCS once per value (the report keeps the best per rate and lists the sweep).
# --val-size N holds N training examples out for validation in every train.py command (the
# same N for the whole study, in its own folder): the report then also shows the test accuracy
# at the best validation point, with β chosen on validation accuracy.
# Rerunning skips finished runs and resumes unfinished ones. CIFAR-10 is downloaded into
# --data-dir (default $DATA_DIR or ./data) when it is not already there. Paths are relative
# to the folder you run it from; it works from any folder.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/methods.sh"

PROFILE="" RATES="0.9" SEEDS="0" BETA="0.3" DEVICE="auto" NOISE="" CHOSEN="" VAL=""
DATA_DIR="${DATA_DIR:-./data}" BASE_DIR="" OUT=""
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --profile|--rates|--seeds|--beta|--data-dir|--base-dir|--out|--device|--label-noise|--methods|--val-size)
      [ $# -ge 2 ] || fail "$1 needs a value (see --help)" ;;
  esac
  case "$1" in
    --profile) PROFILE="$2"; shift 2 ;;
    --rates) RATES="$2"; shift 2 ;;
    --seeds) SEEDS="$2"; shift 2 ;;
    --beta) BETA="$2"; shift 2 ;;
    --data-dir) DATA_DIR="$2"; shift 2 ;;
    --base-dir) BASE_DIR="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --label-noise) NOISE="$2"; shift 2 ;;
    --methods) CHOSEN="$2"; shift 2 ;;
    --val-size) VAL="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) fail "unknown argument $1 (see --help)" ;;
  esac
done
check_list "--rates" "$RATES" fraction
check_list "--seeds" "$SEEDS" integer
check_list "--beta" "$BETA" beta
[ -z "$NOISE" ] || check_list "--label-noise" "$NOISE" beta
[ -z "$CHOSEN" ] || check_methods "--methods" "$CHOSEN"
if [ -n "$VAL" ]; then
  [[ "$VAL" =~ ^[0-9]+$ ]] || fail "--val-size: '$VAL' is not a whole number"
  [ "$VAL" -gt 0 ] || VAL=""  # 0: none, the paper's protocol
fi
PY="${PYTHON:-python}"
if [ -z "$PROFILE" ]; then
  if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    PROFILE=gpu; else PROFILE=cpu; fi
fi
case "$PROFILE" in
  cpu)   NET=resnet20 SUBSET=10000 EPOCHS=10  ITERS=200   BS=128 TEST=0 ;;
  gpu)   NET=resnet18 SUBSET=0     EPOCHS=200 ITERS=10000 BS=256 TEST=0 ;;
  smoke) NET=resnet20 SUBSET=1000  EPOCHS=2   ITERS=20    BS=64  TEST=1000 ;;
  *) fail "--profile must be cpu, gpu or smoke, got $PROFILE" ;;
esac
if [ -n "$CHOSEN" ]; then
  METHODS="${CHOSEN//,/ }"
elif [ "$PROFILE" = smoke ]; then
  # most of a smoke run is process start-up (~10 s each), so it runs three methods
  METHODS="random ccs accumulated_margin"
fi
BASE_DIR="${BASE_DIR:-./data-model/cifar10-$PROFILE${NOISE:+-noise$NOISE}${VAL:+-val$VAL}}"
OUT="${OUT:-$BASE_DIR}"
COMMON=(--dataset cifar10 --data-dir "$DATA_DIR" --network "$NET" --batch-size "$BS"
        --train-subset "$SUBSET" --test-subset "$TEST" --device "$DEVICE"
        ${NOISE:+--label-noise "$NOISE"} ${VAL:+--val-size "$VAL"})
SCORE="$BASE_DIR/all-data/data-score-all-data.pickle"

echo "== quickstart: profile $PROFILE ($NET, subset ${SUBSET/#0/all}, $EPOCHS epochs of dynamics," \
     "$ITERS iterations per coreset), rates $RATES, seeds $SEEDS, runs in $BASE_DIR"
echo "== 1/3 full-data run with training dynamics"
"$PY" "$ROOT/train.py" "${COMMON[@]}" --epochs "$EPOCHS" --task-name all-data --base-dir "$BASE_DIR"
if [ ! -f "$SCORE" ]; then
  echo "== 2/3 importance scores"
  "$PY" "$ROOT/generate_importance_score.py" --base-dir "$BASE_DIR" --task-name all-data \
    --device "$DEVICE"
fi

echo "== 3/3 coreset runs"
for rate in ${RATES//,/ }; do
  ratio=$(keep_ratio "$rate")
  for seed in ${SEEDS//,/ }; do
    for method in $METHODS; do
      betas=0 task="$method-$rate-s$seed"
      [ "$method" = ccs ] && betas="${BETA//,/ }"
      [ "$method" = d2 ] && betas=$(d2_beta "$rate")
      for beta in $betas; do
        [ "$method" = ccs ] && task="ccs-b$beta-$rate-s$seed"
        echo "-- $task"
        # shellcheck disable=SC2046
        "$PY" "$ROOT/train.py" "${COMMON[@]}" --iterations "$ITERS" --seed "$seed" \
          --task-name "$task" --base-dir "$BASE_DIR/coresets" --coreset \
          --coreset-ratio "$ratio" --data-score-path "$SCORE" $(method_flags "$method" "$beta")
      done
    done
  done
done
echo "== report"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m core.report "$BASE_DIR" --out "$OUT"
