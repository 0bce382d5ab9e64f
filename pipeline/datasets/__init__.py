"""Dataset builders (one module per source format) and the HDF5 split format."""

from pipeline.datasets.hdf5_format import (
    FORMAT_VERSION,
    SplitInfo,
    SplitWriter,
    open_split,
    read_split_info,
    split_path,
)

__all__ = [
    "FORMAT_VERSION",
    "SplitInfo",
    "SplitWriter",
    "open_split",
    "read_split_info",
    "split_path",
]
