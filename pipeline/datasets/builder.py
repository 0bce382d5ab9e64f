"""Writing a whole data set (all its splits) into a dataset directory."""

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.datasets.hdf5_format import SplitWriter, split_path, write_mean_json
from pipeline.datasets.statistics import ChannelStatistics
from pipeline.errors import UserError

SPLIT_ORDER = ("train", "val", "test")
SUMMARY_FILE = "build_summary.json"
# Images written per HDF5 append; only affects speed, not the file's contents.
WRITE_BATCH = 1024


def prepare_output_dir(output_dir: str | Path, overwrite: bool) -> Path:
    """Create the dataset directory; refuse to replace existing splits unless `overwrite`."""
    output_dir = Path(output_dir)
    existing = [split_path(output_dir, split) for split in SPLIT_ORDER]
    existing = [path for path in existing if path.exists()]
    if existing and not overwrite:
        names = ", ".join(path.name for path in existing)
        raise UserError(
            f"{output_dir} already holds {names}; pass --overwrite to replace them "
            f"or choose another --output"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


def write_in_memory_dataset(
    output_dir: str | Path,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    class_names: list[str],
    source: str,
    overwrite: bool = False,
) -> dict:
    """Write splits held in memory (name -> (uint8 RGB images, labels)); return the summary.

    Statistics come from the train split only and are copied into every split.
    """
    if "train" not in splits:
        raise ValueError("a data set needs a train split for its statistics")
    output_dir = prepare_output_dir(output_dir, overwrite)
    statistics = ChannelStatistics()
    statistics.update(splits["train"][0])
    written = {}
    for split in [name for name in SPLIT_ORDER if name in splits]:
        images, labels = splits[split]
        with SplitWriter(
            split_path(output_dir, split),
            image_shape=images.shape[1:],
            class_names=class_names,
            split=split,
            source=source,
        ) as writer:
            for start in tqdm(
                range(0, len(images), WRITE_BATCH), desc=f"writing {split}", unit="batch"
            ):
                stop = start + WRITE_BATCH
                writer.add(images[start:stop], labels[start:stop])
            writer.finish(statistics.mean, statistics.std)
        written[split] = len(images)
    write_mean_json(output_dir, statistics.mean)
    summary = {
        "dataset_dir": str(output_dir),
        "source": source,
        "num_classes": len(class_names),
        "images_per_split": written,
        "mean": statistics.mean.tolist(),
        "std": statistics.std.tolist(),
        "skipped": {},
    }
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
