"""ResNet reproduction pipeline: HDF5 datasets, loader, models, training, evaluation.

Data flows one way: source files -> HDF5 splits -> HDF5DatasetGenerator -> ResNet
-> model.fit with callbacks -> run directory -> rank-1/rank-5 report.

From Python: `pipeline.build_dataset(...)`, `pipeline.train(config, run_dir,
callbacks=[...])`, `pipeline.evaluate(run_dir=...)`, `pipeline.find_lr(config)`,
`pipeline.repeat_runs(config, seeds, checkpoints=...)` (pipeline.api; the scripts wrap it).
"""

import os

# TensorFlow prints start-up notes on stderr, and a cuInit error on its first op on a
# machine without a GPU; level 3 keeps its C++ side quiet (Python exceptions still say
# what went wrong). PIPELINE_VERBOSE=1, or a level set beforehand, keeps them. This
# must happen before the first import of tensorflow (through keras), so it is here.
if os.environ.get("PIPELINE_VERBOSE", "") in ("", "0"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The Python API (pipeline.api), loaded on first use: `import pipeline.errors` by a
# script must not pay for the data-set builders and the config.
_API = ("TrainingResult", "build_dataset", "evaluate", "find_lr", "load_config")
_API += ("repeat_runs", "train")
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from pipeline import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
