"""Datasets read whole into memory, and the on-device loader that batches them."""

from core.data.datasets import DATASETS, ArrayDataset, DatasetBundle, load_dataset
from core.data.device import DeviceLoader

__all__ = ["DATASETS", "ArrayDataset", "DatasetBundle", "DeviceLoader", "load_dataset"]
