"""ResNet reproduction pipeline: HDF5 datasets, loader, models, training, evaluation.

Data flows one way: source files -> HDF5 splits -> HDF5DatasetGenerator -> ResNet
-> model.fit with callbacks -> run directory -> rank-1/rank-5 report.
"""

import os

# TensorFlow prints pages of start-up notes on stderr; keep warnings and errors only.
# This must happen before the first import of tensorflow (through keras), so it is here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
