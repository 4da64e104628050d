"""Datasets: one interface, readers registered by name, the FashionMosaic benchmark generator."""

from autotag.data import fashion_mnist as _fashion_mnist  # noqa: F401  (registers its reader)
from autotag.data import mosaic as _mosaic  # noqa: F401
from autotag.data import readers as _readers  # noqa: F401
from autotag.data.base import Dataset, list_readers, load_dataset, register_reader
from autotag.data.fashion_mnist import CLASSES as FASHION_MNIST_CLASSES
from autotag.data.fashion_mnist import read_fashion_mnist
from autotag.data.mosaic import write_fashion_mosaic

__all__ = [
    "FASHION_MNIST_CLASSES",
    "Dataset",
    "list_readers",
    "load_dataset",
    "read_fashion_mnist",
    "register_reader",
    "write_fashion_mosaic",
]
