"""Loading HDF5 splits into batches for training and evaluation."""

from pipeline.io.hdf5_generator import HDF5DatasetGenerator
from pipeline.io.loader_options import LoaderOptions

__all__ = ["HDF5DatasetGenerator", "LoaderOptions"]
