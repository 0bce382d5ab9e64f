"""Dataset builders (one module per source format) and the HDF5 split format."""

from pipeline.datasets.hdf5_format import FORMAT_VERSION, split_path
from pipeline.datasets.hdf5_reader import SplitInfo, open_split, read_split_info
from pipeline.datasets.hdf5_writer import SplitWriter

__all__ = [
    "FORMAT_VERSION",
    "SplitInfo",
    "SplitWriter",
    "open_split",
    "read_split_info",
    "split_path",
]
