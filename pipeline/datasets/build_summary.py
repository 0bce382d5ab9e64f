"""The end-of-build report printed by build_dataset.py (the same facts as build_summary.json)."""

from pipeline.datasets.image_folders import printable

# Skipped files listed by name per reason; the JSON summary lists them all.
LISTED_PER_REASON = 5


def format_summary(summary: dict) -> str:
    lines = [
        f"built {summary['dataset_dir']} from {summary['source']}: "
        f"{summary['num_classes']} classes",
    ]
    for split, count in summary["images_per_split"].items():
        lines.append(f"  {split:5s} {count:8d} images")
    mean = ", ".join(f"{value:.2f}" for value in summary["mean"])
    std = ", ".join(f"{value:.2f}" for value in summary["std"])
    lines.append(f"  train RGB mean ({mean}), std ({std})")
    for reason, paths in summary["skipped"].items():
        lines.append(f"  skipped {len(paths)} file(s), {reason}:")
        lines.extend(f"    {printable(path)}" for path in paths[:LISTED_PER_REASON])
        if len(paths) > LISTED_PER_REASON:
            lines.append(f"    ... and {len(paths) - LISTED_PER_REASON} more")
    lines.append(f"  summary: {summary['dataset_dir']}/build_summary.json")
    return "\n".join(lines)
