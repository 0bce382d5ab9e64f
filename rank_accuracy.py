"""Rank-1 and rank-5 accuracy of a checkpoint over every sample of a split.

python rank_accuracy.py                      # latest checkpoint, test split
python rank_accuracy.py --checkpoints output/decay   # that run's latest checkpoint
python rank_accuracy.py --model output/checkpoints/epoch_0030.keras --report report.json

A run whose preset states an expected result ([expected] in config/*.toml) gets the
measured figures beside it: the difference, and whether it falls in the source's spread
(only for a run on the preset's data set, scored on the data it trained on).

The data scored is the one the checkpoint was trained on (its state records it),
unless --dataset names another.
python rank_accuracy.py --mode ten_crop      # corners + centre, mirrored, scores averaged
python rank_accuracy.py --mode multi_scale --scales 224,256,384,480,640
"""

import argparse
import sys
from pathlib import Path

from pipeline.api import evaluate
from pipeline.cli import add_config_arguments
from pipeline.errors import OneLineArgumentParser, UserError, run_cli
from pipeline.evaluation.reproduction import format_comparison


def parse_scales(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--scales must look like 224,256,384, got {text!r}") from None


@run_cli
def main(argv=None):
    parser = OneLineArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="checkpoint (default: latest of the config's run)")
    parser.add_argument("--checkpoints", help="run directory: score its latest checkpoint")
    parser.add_argument(
        "--dataset", help="dataset directory or split file (default: the model's training data)"
    )
    parser.add_argument("--split", help="split to evaluate (default: the test split)")
    parser.add_argument("--mode", default="center", choices=["center", "ten_crop", "multi_scale"])
    parser.add_argument("--scales", type=parse_scales, default=(), help="multi_scale: 224,256,...")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--report", help="write the figures to this JSON file (and a confusion PNG)"
    )
    parser.add_argument("--confusion", help="write the confusion picture to this PNG")
    parser.add_argument("--per-class", action="store_true", help="print the classification report")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    report = evaluate(
        args.config,
        model=args.model,
        run_dir=args.checkpoints,
        dataset=args.dataset,
        split=args.split,
        mode=args.mode,
        scales=args.scales,
        batch_size=args.batch_size,
        overrides=args.overrides,
        announce=lambda note: print(f"note: {note}"),
    )
    # Keras is loaded by now: the report's formatting lives beside the evaluation.
    from pipeline.evaluation.rank_accuracy import format_report, write_confusion, write_report

    print(format_report(report))
    if "reproduction" in report:
        print(format_comparison(report["reproduction"]))
    if args.per_class:
        print(report["classification_report_text"])
    confusion = args.confusion
    if args.report:
        print(f"report: {write_report(report, args.report)}")
        confusion = confusion or Path(args.report).with_name(
            f"{Path(args.report).stem}_confusion.png"
        )
    if confusion:
        class_names = [entry["name"] for entry in report["per_class"]]
        print(f"confusion: {write_confusion(report, confusion, class_names)}")


if __name__ == "__main__":
    sys.exit(main())
