"""Training: one Trainer for every dataset, checkpoints, optimisers and schedules, DDP helpers."""
