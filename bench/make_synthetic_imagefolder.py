"""Write a synthetic ImageNet-style ImageFolder (train/ and val/, one folder per class, JPEGs),
to time train_imagenet.py without the real data set.

Every image is a deterministic function of (split, class, number): a class colour and stripe
pattern (so a model can learn something) plus noise, encoded as a JPEG of quality 90, about the
size and decode cost of an ImageNet photo at the same resolution.

    python bench/make_synthetic_imagefolder.py /tmp/synthetic-imagenet --classes 100 \\
        --train-per-class 60 --val-per-class 5 --size 256
"""

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image


def get_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="folder to write train/ and val/ into")
    parser.add_argument("--classes", type=int, default=100, help="classes (default: 100)")
    parser.add_argument(
        "--train-per-class", type=int, default=260, help="training images per class (default: 260)"
    )
    parser.add_argument(
        "--val-per-class", type=int, default=10, help="validation images per class (default: 10)"
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs="+",
        default=[256, 320],
        metavar="PIXELS",
        help="image height and width, or one number for square images (default: 256 320)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: all cores)",
    )
    return parser.parse_args()


def class_template(label: int, height: int, width: int) -> np.ndarray:
    """float32 [H, W, 3] in 0..255: a colour per class times a class-specific stripe pattern."""
    hue = (label * 0.618034) % 1.0
    colour = 0.5 + 0.4 * np.cos(2 * np.pi * (hue + np.array([0.0, 1 / 3, 2 / 3])))
    frequency, vertical = 1 + label % 5, (label // 5) % 2 == 1
    along = np.arange(width) / width if vertical else np.arange(height) / height
    stripes = 0.7 + 0.3 * np.cos(2 * np.pi * frequency * along)
    pattern = stripes[None, :] if vertical else stripes[:, None]
    pattern = np.broadcast_to(pattern, (height, width))
    return (255 * pattern[:, :, None] * colour[None, None, :]).astype(np.float32)


def write_class(job) -> int:
    """Write one class's images of one split; returns how many."""
    out, split, label, count, (height, width), seed = job
    folder = os.path.join(out, split, f"n{label:08d}")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng([seed, label, 0 if split == "train" else 1])
    template = class_template(label, height, width)
    for i in range(count):
        noise = rng.normal(0.0, 30.0, size=(height, width, 3)).astype(np.float32)
        pixels = np.clip(template + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"n{label:08d}_{i}.JPEG"), quality=90)
    return count


def main(args) -> int:
    if (
        len(args.size) > 2
        or min(args.classes, args.train_per_class, args.val_per_class, *args.size) <= 0
    ):
        print(
            "error: --classes, --train-per-class, --val-per-class must be positive, --size "
            "one or two positive numbers",
            file=sys.stderr,
        )
        return 2
    size = (args.size[0], args.size[-1])
    started = time.time()
    jobs = [
        (args.out, split, label, count, size, args.seed)
        for split, count in (("train", args.train_per_class), ("val", args.val_per_class))
        for label in range(args.classes)
    ]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        written = sum(pool.map(write_class, jobs))
    print(
        f"wrote {written} images of {size[0]}x{size[1]} in {args.classes} classes to "
        f"{args.out} in {time.time() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args()))
