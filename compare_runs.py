"""Compare runs: every run's training and validation curves and rates in one picture
(aligned by epoch, each --lr marked), and a table of best and final validation
rank-1/rank-5, epochs, training time and data fingerprints, as text and JSON.

python compare_runs.py output/checkpoints output/decay
python compare_runs.py output/run_a output/run_b --output output/comparison
"""

import argparse
import sys

from pipeline.errors import OneLineArgumentParser, run_cli
from pipeline.evaluation.run_comparison import compare_runs


@run_cli
def main(argv=None):
    parser = OneLineArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="run directories (train.py --checkpoints)")
    parser.add_argument(
        "--output", default="output/comparison", help="folder for comparison.png and .json"
    )
    args = parser.parse_args(argv)
    _rows, table, picture, data = compare_runs(args.runs, args.output)
    print(table)
    print(f"picture: {picture}")
    print(f"table: {data}")


if __name__ == "__main__":
    sys.exit(main())
