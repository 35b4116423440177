"""Datasets read whole into memory, and the on-device loader that batches them."""

from core.data.datasets import DATASETS, ArrayDataset, DatasetBundle, load_dataset
from core.data.device import DeviceLoader, inference_batch_size

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "DatasetBundle",
    "DeviceLoader",
    "inference_batch_size",
    "load_dataset",
]
