"""The on-device loader: coverage, determinism, resume, sharding, and the augmentation itself."""

import pytest
import torch
import torchvision.transforms.functional as TF

from core.data.device import DeviceLoader, batch_bounds
from core.errors import UserError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
IDENTITY = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def random_data(n=50, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n) % 10


def make_loader(images, targets, **overrides):
    settings = dict(batch_size=8, augment=True, shuffle=True, seed=0, device="cpu", **IDENTITY)
    settings.update(overrides)
    return DeviceLoader(images, targets, **settings)


def collect(loader, epoch=0, start_batch=0):
    return [tuple(t.cpu() for t in batch) for batch in loader.epoch(epoch, start_batch)]


def as_uint8(images):
    """Undo the identity normalisation exactly."""
    return (images * 255).round().to(torch.uint8)


@pytest.mark.parametrize("device", DEVICES)
def test_every_example_once_per_epoch(device):
    images, targets = random_data(50)
    loader = make_loader(images, targets, device=device)
    assert len(loader) == 7 and loader.num_examples == 50  # 6 x 8, then 2
    for epoch in range(3):
        batches = list(loader.epoch(epoch))
        assert all(x.device.type == device for batch in batches for x in batch)
        index = torch.cat([b[0] for b in batches]).cpu()
        assert sorted(index.tolist()) == list(range(50))
        for index, images_out, targets_out in batches:
            assert index.dtype == torch.int64 and targets_out.dtype == torch.int64
            assert images_out.dtype == torch.float32 and images_out.shape[1:] == (3, 32, 32)
            assert torch.equal(targets_out.cpu(), targets[index.cpu()])


def test_indices_subset_yields_original_indices():
    images, targets = random_data(40)
    subset = torch.tensor([3, 7, 8, 21, 22, 30, 39])
    loader = make_loader(images, targets, indices=subset, batch_size=3, augment=False)
    assert loader.num_examples == 7 and loader.images.shape[0] == 7  # only the subset moved
    batches = collect(loader)
    index = torch.cat([b[0] for b in batches])
    assert sorted(index.tolist()) == subset.tolist()
    for index, images_out, targets_out in batches:
        assert torch.equal(as_uint8(images_out), images[index])
        assert torch.equal(targets_out, targets[index])


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_share_each_epoch_exactly(world_size):
    images, targets = random_data(53)
    loaders = [
        make_loader(images, targets, batch_size=12, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    assert len({len(loader) for loader in loaders}) == 1  # same step count on every rank
    per_rank = [collect(loader, epoch=1) for loader in loaders]
    index = torch.cat([b[0] for batches in per_rank for b in batches])
    assert sorted(index.tolist()) == list(range(53))  # once each, no padding duplicates
    assert all(len(b[0]) >= 2 for batches in per_rank for b in batches)
    # Together, the ranks' step-b batches are global batch b of the epoch's one order.
    order = torch.cat([b[0] for b in collect(make_loader(images, targets), epoch=1)])
    for step, (start, end) in enumerate(batch_bounds(53, 12, world_size)):
        together = torch.cat([batches[step][0] for batches in per_rank])
        assert sorted(together.tolist()) == sorted(order[start:end].tolist())


def test_same_seed_same_batches_other_epoch_or_seed_differs():
    images, targets = random_data(40)
    first = collect(make_loader(images, targets), epoch=2)
    again = collect(make_loader(images, targets), epoch=2)
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    order = torch.cat([b[0] for b in first])
    assert not torch.equal(order, torch.cat([b[0] for b in collect(make_loader(images, targets))]))
    other_seed = collect(make_loader(images, targets, seed=1), epoch=2)
    assert not torch.equal(order, torch.cat([b[0] for b in other_seed]))


def test_resume_mid_epoch_matches_uninterrupted_epoch():
    images, targets = random_data(45)
    loader = make_loader(images, targets)
    whole = collect(loader, epoch=4)
    tail = collect(make_loader(images, targets), epoch=4, start_batch=3)
    assert len(tail) == len(whole) - 3
    for a, b in zip(whole[3:], tail, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert collect(loader, epoch=4, start_batch=len(loader)) == []
    with pytest.raises(ValueError):
        loader.epoch(0, start_batch=len(loader) + 1)


def test_augmentation_does_not_change_the_order():
    images, targets = random_data(30)
    plain = collect(make_loader(images, targets, augment=False), epoch=5)
    augmented = collect(make_loader(images, targets, augment=True), epoch=5)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(plain, augmented, strict=True))


def candidate_crops(image):
    """All 162 outcomes of RandomCrop(32, padding=4, reflect) + flip, via torchvision."""
    padded = TF.pad(image, [4], padding_mode="reflect")
    crops = {}
    for top in range(9):
        for left in range(9):
            crop = TF.crop(padded, top, left, 32, 32)
            crops[(top, left, False)] = crop
            crops[(top, left, True)] = TF.hflip(crop)
    return crops


def test_crops_are_true_reflect_padded_crops_and_flips():
    images, targets = random_data(64, seed=1)
    loader = make_loader(images, targets, batch_size=64)
    outcomes = []
    for epoch in range(2):
        for index, images_out, _ in collect(loader, epoch=epoch):
            for i, image in zip(index.tolist(), as_uint8(images_out), strict=True):
                matches = [
                    k for k, c in candidate_crops(images[i]).items() if torch.equal(c, image)
                ]
                assert len(matches) == 1, f"example {i} is not a reflect-padded crop"
                outcomes.append(matches[0])
    flipped = sum(flip for _, _, flip in outcomes) / len(outcomes)
    assert 0.3 < flipped < 0.7
    assert {top for top, _, _ in outcomes} == set(range(9))
    assert {left for _, left, _ in outcomes} == set(range(9))


def test_no_augmentation_gives_the_dataset_in_order_normalised():
    images, targets = random_data(20)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    loader = make_loader(images, targets, augment=False, shuffle=False, mean=mean, std=std)
    batches = collect(loader)
    assert torch.equal(torch.cat([b[0] for b in batches]), torch.arange(20))
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    assert torch.allclose(torch.cat([b[1] for b in batches]), expected, atol=1e-5)
    assert torch.equal(torch.cat([b[2] for b in batches]), targets)


def test_channels_last_same_values():
    images, targets = random_data(20)
    plain = collect(make_loader(images, targets))
    channels_last = collect(make_loader(images, targets, channels_last=True))
    for a, b in zip(plain, channels_last, strict=True):
        assert a[1].is_contiguous() and b[1].is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a[1], b[1])


def test_final_batch_merge_rule():
    assert batch_bounds(10, 4, 1) == [(0, 4), (4, 8), (8, 10)]  # 2 left: a batch of its own
    assert batch_bounds(9, 4, 1) == [(0, 4), (4, 9)]  # 1 left: merged
    assert batch_bounds(11, 4, 2) == [(0, 4), (4, 11)]  # 3 left over 2 ranks: one rank gets 1
    assert batch_bounds(12, 4, 2) == [(0, 4), (4, 8), (8, 12)]
    assert batch_bounds(3, 8, 2) == [(0, 3)]  # a single batch cannot merge
    images, targets = random_data(9)
    loader = make_loader(images, targets, batch_size=4)
    assert len(loader) == 2 and [len(b[0]) for b in collect(loader)] == [4, 5]


@pytest.mark.parametrize(
    "overrides",
    [
        dict(batch_size=2, world_size=3, rank=0),
        dict(rank=2, world_size=2),
        dict(indices=torch.tensor([0, 99])),
        dict(seed=-1),
        dict(mean=(0.5,), std=(0.5,)),
    ],
)
def test_bad_arguments(overrides):
    images, targets = random_data(20)
    with pytest.raises(UserError):
        make_loader(images, targets, **overrides)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_batches_equal_cpu_batches():
    images, targets = random_data(40)
    for channels_last in (False, True):
        cpu = collect(make_loader(images, targets, channels_last=channels_last), epoch=3)
        cuda = collect(
            make_loader(images, targets, channels_last=channels_last, device="cuda"), epoch=3
        )
        for a, b in zip(cpu, cuda, strict=True):
            assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
            assert torch.allclose(a[1], b[1], atol=1e-6)


def test_inference_batch_size_changes_no_prediction():
    """Test and scoring passes use a smaller batch on CPU (faster there): the logits of every
    example, hence accuracies and scores, stay the same as with the GPU's batch of 1024."""
    from core.data import inference_batch_size
    from core.models import build_model
    from core.training.run import place_model

    assert inference_batch_size("cpu") == 128 and inference_batch_size("cuda") == 1024
    torch.manual_seed(0)
    model = place_model(build_model("resnet20", 10), torch.device("cpu")).eval()
    images, targets = random_data(n=300)
    outputs = {}
    for batch_size in (inference_batch_size("cpu"), inference_batch_size("cuda")):
        loader = make_loader(images, targets, batch_size=batch_size, augment=False, shuffle=False)
        with torch.no_grad():
            outputs[batch_size] = torch.cat([model(x) for _, x, _ in loader.epoch(0)])
    assert outputs[128].shape == (300, 10)
    assert torch.allclose(outputs[128], outputs[1024], atol=1e-5)
    assert torch.equal(outputs[128].argmax(1), outputs[1024].argmax(1))
