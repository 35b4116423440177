#!/usr/bin/env bash
# Every GPU check in one command, for a lent H100 or H200 (README, "Speed").
#
#   bash bench/gpu_check.sh [train] [imagenet] [fast] [reproduce]  (default: train imagenet fast)
#
# train      bench/bench_train.py on real CIFAR-10, ResNet-18, batch 256, bf16: our pipeline
#            against the reference-style one, a few hundred iterations each (~2 min)
# imagenet   train_imagenet.py, ResNet-34 on synthetic 224x224 JPEGs, a warm-up run and a
#            longer one; their difference is the warm rate (~2 min)
# fast       the fast recipe (--recipe fast --network airbench94) on all of CIFAR-10, 10 epochs,
#            then its scores and one CCS coreset run at 90% pruning; times and accuracies (~2 min)
# reproduce  scripts/reproduce_cifar10.sh --budget short (~7 min)
# CIFAR-10 comes from cifar10-jpeg.tar.gz + prepare_cifar10.py in ./local/gpu (copy
# ../shared/data/* there and name local/gpu in the device tool's carry), ./shared/data or
# ../shared/data; nothing is downloaded or installed. Python: $PYTHON, else python3. Results
# go to $OUT when set (the device tool brings that folder back), else results/gpu/; commit
# them under results/gpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGES="${*:-train imagenet fast}"
DEST="${OUT:-results/gpu}"
DATE=$(date +%Y-%m-%d)
WORK="${GPU_CHECK_WORK:-/tmp/ccs-gpu-check}"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
for stage in $STAGES; do  # before minutes of work, not after
  case "$stage" in
    train|imagenet|fast|reproduce) ;;
    *) echo "error: unknown stage $stage (train, imagenet, fast, reproduce)" >&2; exit 2 ;;
  esac
done
mkdir -p "$DEST" "$WORK"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name(0))"
df -h /dev/shm || true  # DataLoader workers hand batches over there (imagenet stage)

prepare_cifar10() {
  [ -f "$WORK/data/cifar10/cifar-10-batches-py/test_batch" ] && return
  local src
  for src in local/gpu shared/data ../shared/data; do
    if [ -f "$src/cifar10-jpeg.tar.gz" ] && [ -f "$src/prepare_cifar10.py" ]; then
      "$PY" "$src/prepare_cifar10.py" "$WORK/data/cifar10"
      return
    fi
  done
  echo "error: no cifar10-jpeg.tar.gz + prepare_cifar10.py in local/gpu, shared/data or" \
    "../shared/data (copy ../shared/data/* to local/gpu and carry it)" >&2
  exit 2
}

# Synthetic ImageNet: 400 images a class, so 40,000 = 156 whole batches of 256 and both runs
# below stay inside epoch 0 (no partial batch, no epoch start).
prepare_imagenet() {
  [ -f "$WORK/imagenet.done" ] && return
  rm -rf "$WORK/imagenet"
  "$PY" bench/make_synthetic_imagefolder.py "$WORK/imagenet" --classes 100 \
    --train-per-class 400 --val-per-class 5 --size 256
  touch "$WORK/imagenet.done"
}

for stage in $STAGES; do
  case "$stage" in
    train)
      prepare_cifar10
      "$PY" bench/bench_train.py --device cuda --network resnet18 --batch-size 256 \
        --iterations 300 --warmup 30 --data-dir "$WORK/data" \
        --json-out "$DEST/$DATE-train.json" 2>&1 | tee "$DEST/$DATE-train.log" ;;
    imagenet)
      prepare_imagenet
      # Each process pays the same start-up (workers starting, cuDNN autotuning) in its first
      # iterations, and both runs see the same images: the 150-iteration run's last 120,
      # timed by the difference of the two training times, are the warm rate.
      for iterations in 30 150; do
        "$PY" train_imagenet.py --data-dir "$WORK/imagenet" --network resnet34 \
          --batch-size 256 --iterations "$iterations" --iterations-per-testing 100000 \
          --lr 0.1 --scheduler cosine --ignore-td --task-name "synthetic-$iterations" \
          --base-dir "$WORK/runs" --no-resume 2>&1 | tail -n 3
      done
      "$PY" - "$WORK/runs" "$DEST/$DATE-imagenet.json" <<'PYEOF'
import json, sys
warm, m = (json.load(open(f"{sys.argv[1]}/synthetic-{n}/metrics.json")) for n in (30, 150))
timed = m["iterations"] - warm["iterations"]
rate = timed * m["args"]["batch_size"] / (m["train_time_s"] - warm["train_time_s"])
keep = {k: m[k] for k in ("network", "device", "git_commit", "versions") if k in m}
keep.update(images_per_s=round(rate, 1), timed_iterations=timed,
            warmup_iterations=warm["iterations"], images_per_s_cold=round(m["images_per_s"], 1),
            batch_size=m["args"]["batch_size"], workers=m["args"].get("workers"),
            data="synthetic 256px JPEG ImageFolder, RandomResizedCrop(224)")
json.dump(keep, open(sys.argv[2], "w"), indent=2)
print(json.dumps(keep, indent=2))
PYEOF
      ;;
    fast)
      prepare_cifar10
      FAST=(--dataset cifar10 --data-dir "$WORK/data" --network airbench94 --recipe fast
            --base-dir "$WORK/fast" --no-download --no-resume)
      "$PY" train.py "${FAST[@]}" --epochs 10 --task-name full 2>&1 | tail -n 3
      "$PY" generate_importance_score.py --base-dir "$WORK/fast" --task-name full 2>&1 | tail -n 1
      "$PY" train.py "${FAST[@]}" --iterations 500 --task-name ccs-0.9 --coreset \
        --coreset-mode stratified --coreset-key accumulated_margin --coreset-ratio 0.1 \
        --mis-ratio 0.3 --data-score-path "$WORK/fast/full/data-score-full.pickle" 2>&1 | tail -n 2
      "$PY" - "$WORK/fast" "$DEST/$DATE-fast.json" <<'PYEOF'
import json, sys
runs = {name: json.load(open(f"{sys.argv[1]}/{name}/metrics.json")) for name in ("full", "ccs-0.9")}
keep = {name: {k: m.get(k) for k in ("best_acc", "last_acc", "iterations_trained", "train_time_s",
                                     "wall_time_s", "images_per_s", "precision", "coreset_size")}
        for name, m in runs.items()}
keep.update({k: runs["full"].get(k) for k in ("device", "git_commit", "versions")})
json.dump(keep, open(sys.argv[2], "w"), indent=2)
print(json.dumps(keep, indent=2))
PYEOF
      ;;
    reproduce)
      prepare_cifar10
      PYTHON="$PY" bash scripts/reproduce_cifar10.sh --budget short --data-dir "$WORK/data" \
        --base-dir "$WORK/cifar10-short" 2>&1 | grep -vE "it/s" | tail -n 40
      cp "$WORK/cifar10-short/summary.json" "$DEST/$DATE-cifar10-short-summary.json"
      cp "$WORK/cifar10-short/table.md" "$DEST/$DATE-cifar10-short-table.md"
      cp "$WORK/cifar10-short/accuracy.png" "$DEST/$DATE-cifar10-short.png" ;;
  esac
done
ls -la "$DEST"
