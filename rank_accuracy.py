"""Rank-1 and rank-5 accuracy of a checkpoint over every sample of a split.

python rank_accuracy.py                      # newest checkpoint, test split
python rank_accuracy.py --model output/checkpoints/epoch_0020.keras --report report.json
"""

import sys

from pipeline.cli import add_config_arguments, config_from_arguments
from pipeline.errors import OneLineArgumentParser, run_cli
from pipeline.evaluation import (
    evaluate,
    format_report,
    newest_checkpoint,
    resolve_split_file,
    write_report,
)


@run_cli
def main(argv=None):
    parser = OneLineArgumentParser(description=__doc__)
    parser.add_argument(
        "--model", default=None, help="checkpoint (default: newest of the config's run)"
    )
    parser.add_argument("--dataset", default=None, help="dataset directory or split file")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the test split)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--report", default=None, help="write the figures to this JSON file")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    config = config_from_arguments(args)
    model_path = args.model or newest_checkpoint(config.checkpoints)
    split_file = resolve_split_file(
        args.dataset or config.data.dataset_dir, args.split or config.data.test_split
    )
    report = evaluate(model_path, split_file, batch_size=args.batch_size)
    print(format_report(report))
    if args.report:
        print(f"report: {write_report(report, args.report)}")


if __name__ == "__main__":
    sys.exit(main())
