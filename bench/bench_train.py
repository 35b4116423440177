"""Training throughput: our pipeline against a reference-style one, same model and device.

Ours: the dataset resident on the device as uint8, batched crop/flip/normalise there, bf16
autocast and channels_last on CUDA, training dynamics accumulated on the device (core's
DeviceLoader + Trainer, the code train.py runs). Reference-style (the authors' scripts): a DataLoader
with per-image PIL transforms in worker processes, fp32, and the log-softmax of every batch
copied to the CPU each iteration, as the authors' scripts do.

    python bench/bench_train.py --device cpu --network resnet20 --iterations 30
    python bench/bench_train.py --device cuda --network resnet18 --iterations 300 --json-out r.json
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core.data import DeviceLoader, load_dataset  # noqa: E402
from core.fileio import atomic_json_dump  # noqa: E402
from core.models import build_model  # noqa: E402
from core.provenance import provenance  # noqa: E402
from core.run_folder import RunFolder  # noqa: E402
from core.scores import TrainingDynamics  # noqa: E402
from core.training.optim import build_scheduler, build_sgd  # noqa: E402
from core.training.run import resolve_precision  # noqa: E402
from core.training.trainer import Trainer  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def get_args():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="device (default: cuda if available, else cpu)",
    )
    p.add_argument("--network", default="resnet18", help="network (default: resnet18)")
    p.add_argument("--batch-size", type=int, default=256, help="batch size (default: 256)")
    p.add_argument("--iterations", type=int, default=300, help="timed iterations (default: 300)")
    p.add_argument("--warmup", type=int, default=20, help="untimed iterations (default: 20)")
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="our pipeline's precision; auto measures fp32 and, where the device runs it "
        "natively (CUDA, AMX/AVX512-BF16 CPUs), bf16 too (default: auto)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=min(16, os.cpu_count() or 1),
        help="reference-style DataLoader workers (default: min(16, cores))",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder holding cifar10/ (default: synthetic 50,000 images)",
    )
    p.add_argument("--json-out", default=None, help="also write the results here")
    return p.parse_args()


def cifar_arrays(data_dir):
    if data_dir:
        data = load_dataset("cifar10", data_dir, download=False)
        return data.train.images, data.train.targets, "cifar10"
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=g)
    return images, torch.randint(0, 10, (50_000,), generator=g), "synthetic"


class _OneBatch:
    """A test loader of one small batch: the timed fit needs one, we do not time it."""

    def __init__(self, loader):
        self.loader = loader

    def epoch(self, epoch, start_batch=0):
        yield next(iter(self.loader.epoch(0)))


def ours(images, targets, args, device, precision):
    channels_last = device.type == "cuda"
    model = build_model(args.network, 10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = DeviceLoader(
        images,
        targets,
        batch_size=args.batch_size,
        mean=MEAN,
        std=STD,
        augment=True,
        shuffle=True,
        seed=0,
        device=device,
        channels_last=channels_last,
    )
    test = _OneBatch(
        DeviceLoader(
            images[:256],
            targets[:256],
            batch_size=256,
            mean=MEAN,
            std=STD,
            augment=False,
            shuffle=False,
            seed=0,
            device=device,
            channels_last=channels_last,
        )
    )
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for phase, iterations in (("warmup", args.warmup), ("timed", args.iterations)):
            optimizer = build_sgd(model, 0.1)
            trainer = Trainer(
                model=model,
                optimizer=optimizer,
                scheduler=build_scheduler(optimizer, "cosine", iterations, len(loader)),
                train_loader=loader,
                test_loader=test,
                device=device,
                run=RunFolder(tmp, phase),
                dynamics=TrainingDynamics(len(targets), 10, device=device),
                precision=precision,
                checkpoint_interval_s=1e9,
                progress=False,
            )
            rates.append(trainer.fit(iterations, epochs_per_test=10**9)["images_per_s"])
    return rates[-1]


class PILDataset(torch.utils.data.Dataset):
    """Per-image PIL decode and transforms, as torchvision's CIFAR10 does."""

    def __init__(self, images, targets):
        self.images = images.permute(0, 2, 3, 1).numpy()
        self.targets = targets.numpy()
        self.transform = T.Compose(
            [
                T.RandomCrop(32, padding=4, padding_mode="reflect"),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(MEAN, STD),
            ]
        )

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return i, self.transform(Image.fromarray(self.images[i])), int(self.targets[i])


def reference_style(images, targets, args, device):
    model = build_model(args.network, 10).to(device)
    optimizer = build_sgd(model, 0.1)
    loader = torch.utils.data.DataLoader(
        PILDataset(images, targets),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=args.workers > 0,
    )
    outputs, done, seen, start = [], 0, 0, None
    model.train()
    while done < args.warmup + args.iterations:
        for index, x, y in loader:
            if done == args.warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start, seen = time.perf_counter(), 0
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            # the reference keeps every batch's log-softmax on the host: a sync per iteration
            outputs.append((index, F.log_softmax(logits, 1).detach().cpu().half()))
            done, seen = done + 1, seen + len(y)
            if done >= args.warmup + args.iterations:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def main():
    args = get_args()
    device = torch.device(args.device)
    if args.precision == "auto":  # fp32, plus bf16 where auto would choose it
        precisions = sorted({"fp32", resolve_precision("auto", device)[0]}, reverse=True)
    else:
        precisions = [args.precision]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    images, targets, source = cifar_arrays(args.data_dir)
    # Whole batches only (50,000 % 256 = 80): a partial batch is a new shape, and cuDNN would
    # autotune for it inside the timed window. The reference-style loader drops it too.
    whole = len(targets) // args.batch_size * args.batch_size
    images, targets = images[:whole], targets[:whole]
    rates = {p: ours(images, targets, args, device, p) for p in precisions}
    ref_rate = reference_style(images, targets, args, device)
    best = max(rates, key=rates.get)
    result = {
        "ours_images_per_s": round(rates[best], 1),
        **{f"ours_{p}_images_per_s": round(r, 1) for p, r in rates.items()},
        "reference_images_per_s": round(ref_rate, 1),
        "ratio": round(rates[best] / ref_rate, 2),
        "iterations": args.iterations,
        "warmup": args.warmup,
        "batch_size": args.batch_size,
        "precision": best,
        "native_bf16": "bf16" in precisions,
        "network": args.network,
        "data": source,
        "workers": args.workers,
        **provenance(device),
    }
    print(f"{'pipeline':<18}{'images/s':>12}{'vs reference':>14}")
    for p, r in rates.items():
        print(f"{'ours ' + p:<18}{r:>12,.0f}{r / ref_rate:>13.2f}x")
    print(f"{'reference-style':<18}{ref_rate:>12,.0f}{1:>13.2f}x")
    print(f"({args.network}, batch {args.batch_size}, {result['device']}, {source} data)")
    if args.json_out:
        atomic_json_dump(result, args.json_out)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
