"""Embedded datasets and batching: scikit-learn digits, MNIST-1D (generated offline) and
the 2-D densities of normalising flows."""

from jacscope.data._batches import batch_bytes as batch_bytes
from jacscope.data._batches import make_batches as make_batches
from jacscope.data._batches import stack_batches as stack_batches
from jacscope.data._datasets import Dataset as Dataset
from jacscope.data._datasets import load_dataset as load_dataset
from jacscope.data._datasets import load_digits as load_digits
from jacscope.data._datasets import load_mnist1d as load_mnist1d
from jacscope.data._densities import DENSITIES as DENSITIES
from jacscope.data._densities import sample_density as sample_density
