"""Build a data set into HDF5 splits (train.h5, val.h5, test.h5) with its statistics.

    python build_dataset.py --dataset digits
    python build_dataset.py --dataset cifar10 --source cifar-10-python.tar.gz
    python build_dataset.py --dataset tiny-imagenet --source tiny-imagenet-200
    python build_dataset.py --dataset caltech256 --source 256_ObjectCategories --encoding jpeg
    python build_dataset.py --dataset folder --source imagenet/train \\
        --val-source imagenet/val --val-labels LOC_val_solution.csv
"""

import argparse
import sys

from pipeline.api import build_dataset
from pipeline.datasets.build_summary import format_summary
from pipeline.datasets.registry import BUILDERS
from pipeline.errors import OneLineArgumentParser, run_cli


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, choices=sorted(BUILDERS))
    parser.add_argument("--source", help="the downloaded data set (archive or folder)")
    parser.add_argument("--output", help="dataset directory (default: output/datasets/NAME)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and file order")
    parser.add_argument("--overwrite", action="store_true", help="replace existing splits")
    parser.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    parser.add_argument("--image-size", type=int, help="shorter side to this, then centre crop")
    parser.add_argument("--encoding", choices=["raw", "jpeg"], help="store pixels or JPEG bytes")
    parser.add_argument(
        "--val-size", type=int, help="CIFAR: val images carved from train (default: a tenth)"
    )
    parser.add_argument("--label-mode", choices=["fine", "coarse"], help="CIFAR-100 labels")
    parser.add_argument("--val-fraction", type=float, help="val share of each class")
    parser.add_argument("--test-fraction", type=float, help="test share of each class")
    parser.add_argument("--test-per-class", type=int, help="Tiny ImageNet: test images per class")
    parser.add_argument(
        "--include-clutter", action="store_const", const=True, help="Caltech-256: keep 257.clutter"
    )
    parser.add_argument("--val-source", help="folder: validation images (tree or flat folder)")
    parser.add_argument("--val-labels", help="folder: file naming the class of each val image")
    parser.add_argument("--test-source", help="folder: test images, a tree of the same classes")
    return parser


@run_cli
def main(argv=None):
    args = vars(build_parser().parse_args(argv))
    summary = build_dataset(args.pop("dataset"), **args)
    print(format_summary(summary))


if __name__ == "__main__":
    sys.exit(main())
