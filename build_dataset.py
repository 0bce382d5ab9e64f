"""Build a data set into HDF5 splits: python build_dataset.py --dataset digits"""

import json
import sys

from pipeline.datasets.registry import BUILDERS, build_dataset
from pipeline.errors import OneLineArgumentParser, run_cli


@run_cli
def main(argv=None):
    parser = OneLineArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, choices=sorted(BUILDERS))
    parser.add_argument("--source", default=None, help="the downloaded data (file or folder)")
    parser.add_argument(
        "--output", default=None, help="dataset directory (default: output/datasets/NAME)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the stratified splits")
    parser.add_argument("--overwrite", action="store_true", help="replace existing splits")
    args = parser.parse_args(argv)
    summary = build_dataset(
        args.dataset,
        output=args.output,
        source=args.source,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    sys.exit(main())
