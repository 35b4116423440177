"""A fingerprint of a training set: what scoring compares with the run it scores, so that
scores never mix one run's dynamics with other data (another --data-dir, a changed copy)."""

import hashlib

import torch


def data_fingerprint(targets, images: torch.Tensor | None = None, paths=None) -> dict:
    """Digests of the labels, and of the images (uint8 arrays, CIFAR family) or their file
    names (ImageNet: decoding 1.28M images would take hours), in dataset order."""
    out = {"targets": _digest(torch.as_tensor(targets).long().contiguous().numpy().tobytes())}
    if images is not None:
        out["images"] = _digest(images.contiguous().numpy().tobytes())
    if paths is not None:  # str or utf-8 bytes (core.data.imagenet.ImageList.paths)
        names = [p if isinstance(p, bytes) else str(p).encode() for p in list(paths)]
        out["files"] = _digest(b"\n".join(names))
    return out


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def differences(recorded: dict | None, found: dict) -> list[str]:
    """The parts (targets, images, files) in which `found` differs from a recorded
    fingerprint; none when the run recorded none (made before fingerprints)."""
    if not recorded:
        return []
    return [part for part in sorted(recorded) if part in found and recorded[part] != found[part]]
