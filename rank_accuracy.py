"""Rank-1 and rank-5 accuracy of a checkpoint over every sample of a split.

python rank_accuracy.py                      # latest checkpoint, test split
python rank_accuracy.py --model output/checkpoints/epoch_0030.keras --report report.json
python rank_accuracy.py --mode ten_crop      # corners + centre, mirrored, scores averaged
python rank_accuracy.py --mode multi_scale --scales 224,256,384,480,640
"""

import argparse
import sys
from pathlib import Path

from pipeline.cli import add_config_arguments, config_from_arguments
from pipeline.errors import OneLineArgumentParser, UserError, run_cli


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
    parser.add_argument("--dataset", help="dataset directory or split file")
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
    config = config_from_arguments(args)
    from pipeline.evaluation import (
        evaluate,
        format_report,
        newest_checkpoint,
        resolve_split_file,
        write_confusion,
        write_report,
    )

    model_path = args.model or newest_checkpoint(config.checkpoints)
    split_file = resolve_split_file(
        args.dataset or config.data.dataset_dir, args.split or config.data.test_split
    )
    report = evaluate(
        model_path, split_file, batch_size=args.batch_size, mode=args.mode, scales=args.scales
    )
    print(format_report(report))
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
