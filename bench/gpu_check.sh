#!/usr/bin/env bash
# Every GPU check in one command, for a lent H100 (see README "GPU checks").
#
#   bash bench/gpu_check.sh [train] [imagenet] [reproduce]     (default: train imagenet)
#
# train      bench/bench_train.py on real CIFAR-10, ResNet-18, batch 256, bf16: our pipeline
#            against the reference-style one, a few hundred iterations each (~2 min)
# imagenet   train_imagenet.py, ResNet-34 on synthetic 224x224 JPEGs (~2 min)
# reproduce  scripts/reproduce_cifar10.sh --budget short (~7 min)
# CIFAR-10 comes from ./local/gpu/cifar10-jpeg.tar.gz (copy ../shared/data/* there and name
# local/gpu in the device tool's carry) or ../shared/data. Results go to $OUT when set (the
# device tool brings that folder back), else results/gpu/; commit them under results/gpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGES="${*:-train imagenet}"
DEST="${OUT:-results/gpu}"
DATE=$(date +%Y-%m-%d)
WORK="${GPU_CHECK_WORK:-/tmp/ccs-gpu-check}"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
mkdir -p "$DEST" "$WORK"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name(0))"

prepare_cifar10() {
  [ -f "$WORK/data/cifar10/cifar-10-batches-py/test_batch" ] && return
  local src=local/gpu
  [ -f "$src/cifar10-jpeg.tar.gz" ] || src=../shared/data
  "$PY" "$src/prepare_cifar10.py" "$WORK/data/cifar10"
}

for stage in $STAGES; do
  case "$stage" in
    train)
      prepare_cifar10
      "$PY" bench/bench_train.py --device cuda --network resnet18 --batch-size 256 \
        --iterations 300 --warmup 30 --data-dir "$WORK/data" \
        --json-out "$DEST/$DATE-train.json" 2>&1 | tee "$DEST/$DATE-train.log" ;;
    imagenet)
      "$PY" bench/make_synthetic_imagefolder.py "$WORK/imagenet" --classes 100 \
        --train-per-class 300 --val-per-class 5 --size 256
      "$PY" train_imagenet.py --data-dir "$WORK/imagenet" --network resnet34 \
        --batch-size 256 --iterations 200 --iterations-per-testing 100000 --lr 0.1 \
        --scheduler cosine --ignore-td --task-name synthetic --base-dir "$WORK/runs" \
        --no-resume 2>&1 | tail -n 5
      "$PY" - "$WORK/runs/synthetic/metrics.json" "$DEST/$DATE-imagenet.json" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
keep = {k: m[k] for k in ("images_per_s", "iterations", "network", "device", "git_commit",
                          "versions") if k in m}
keep.update(batch_size=m["args"]["batch_size"], workers=m["args"].get("workers"),
            data="synthetic 256px JPEG ImageFolder, RandomResizedCrop(224)")
json.dump(keep, open(sys.argv[2], "w"), indent=2)
print(json.dumps(keep, indent=2))
PYEOF
      ;;
    reproduce)
      prepare_cifar10
      bash scripts/reproduce_cifar10.sh --budget short --data-dir "$WORK/data" \
        --base-dir "$WORK/cifar10-short" 2>&1 | grep -vE "it/s" | tail -n 40
      cp "$WORK/cifar10-short/summary.json" "$DEST/$DATE-cifar10-short-summary.json"
      cp "$WORK/cifar10-short/table.md" "$DEST/$DATE-cifar10-short-table.md"
      cp "$WORK/cifar10-short/accuracy.png" "$DEST/$DATE-cifar10-short.png" ;;
    *) echo "error: unknown stage $stage (train, imagenet, reproduce)" >&2; exit 2 ;;
  esac
done
ls -la "$DEST"
