"""Kill a run with SIGKILL at random moments, resume it each time, and check that what it
produces equals an uninterrupted run's output bit for bit (CPU).

The chain is the paper's (full-data run with dynamics -> scores -> a CCS coreset run), on a
small CIFAR-10 written here unless --data-dir is given. Checkpoints are written at every
epoch end (--checkpoint-interval 0) so that kills land during checkpoint writes too, and every
third kill comes near the end of a run, between its last checkpoint and its outputs.

    python bench/chaos_resume.py --kills 6 --seed 0
"""

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from core.score_io import load_data_score  # noqa: E402
from core.training.checkpoint import load_checkpoint  # noqa: E402


def get_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kills", type=int, default=6, help="SIGKILLs per run (default: 6)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill times (default: 0)")
    p.add_argument("--data-dir", default=None, help="folder holding cifar10/ (default: tiny)")
    return p.parse_args()


def commands(data_dir, base):
    common = [
        "--dataset",
        "cifar10",
        "--data-dir",
        data_dir,
        "--network",
        "resnet20",
        "--batch-size",
        "64",
        "--checkpoint-interval",
        "0",
        "--device",
        "cpu",
    ]
    score = f"{base}/all-data/data-score-all-data.pickle"
    return [
        ["train.py", *common, "--epochs", "6", "--task-name", "all-data", "--base-dir", base],
        [
            "generate_importance_score.py",
            "--base-dir",
            base,
            "--task-name",
            "all-data",
            "--device",
            "cpu",
        ],
        [
            "train.py",
            *common,
            "--iterations",
            "60",
            "--task-name",
            "ccs",
            "--base-dir",
            f"{base}/coresets",
            "--coreset",
            "--coreset-mode",
            "stratified",
            "--coreset-key",
            "accumulated_margin",
            "--coreset-ratio",
            "0.3",
            "--mis-ratio",
            "0.2",
            "--data-score-path",
            score,
        ],
    ]


def run(argv):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_to_end(argv):
    proc = run(argv)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed:\n{err}")


def run_with_kills(argv, kills, rng, duration):
    """Start, SIGKILL at a random moment, restart; `kills` times, then run to the end."""
    killed = 0
    while killed < kills:
        proc = run(argv)
        # early enough that the (resumed, shorter) run is still going, late enough to be past
        # start-up: into training steps and checkpoint writes; every third kill late, where it
        # lands between the last checkpoint and the outputs (the run is finished by rerunning)
        late = killed % 3 == 2
        time.sleep(rng.uniform(0.85, 1.0) * duration if late else rng.uniform(0.15, 0.5) * duration)
        if proc.poll() is not None:  # finished before the kill: nothing left to interrupt
            break
        proc.kill()
        proc.wait()
        killed += 1
    run_to_end(argv)
    return killed


def outputs(base):
    scores = load_data_score(f"{base}/all-data/data-score-all-data.pickle")
    coreset = torch.load(f"{base}/coresets/ccs/coreset-indices.pt", weights_only=True)
    model = load_checkpoint(f"{base}/coresets/ccs/ckpt-last.pt")["model"]
    return {"scores": scores, "coreset": {"indices": coreset}, "final model": model}


def equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def main():
    args = get_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            from tinydata import write_tiny

            data_dir = os.path.join(tmp, "data")
            write_tiny("cifar10", data_dir, n_train=600, n_test=100, seed=0)
        clean, chaos = os.path.join(tmp, "clean"), os.path.join(tmp, "chaos")
        durations = []
        for argv in commands(data_dir, clean):
            start = time.monotonic()
            run_to_end(argv)
            durations.append(time.monotonic() - start)
        kills = []
        for argv, duration in zip(commands(data_dir, chaos), durations):
            if argv[0] == "train.py":
                kills.append(run_with_kills(argv, args.kills, rng, duration))
            else:
                run_to_end(argv)
        a, b = outputs(clean), outputs(chaos)
        same = {name: equal(a[name], b[name]) for name in a}
        differing = [k for k in a["scores"] if not torch.equal(a["scores"][k], b["scores"][k])]
        if differing:
            print(f"  score keys that differ: {', '.join(differing)}")
        print(
            f"SIGKILLs: {kills[0]} in the full-data run, {kills[1]} in the coreset run; "
            "each resumed by rerunning its command"
        )
        for name, ok in same.items():
            print(f"  {name}: {'identical' if ok else 'DIFFERENT'} to an uninterrupted run")
        return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
