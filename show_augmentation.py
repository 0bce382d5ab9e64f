"""Write a PNG grid of augmented train samples: each row is one image, then its augmentations.

python show_augmentation.py --config config/cifar10_resnet56_ctrl_c.toml --output augment.png
"""

import argparse
import sys

from pipeline.cli import add_config_arguments, config_from_arguments
from pipeline.datasets.hdf5_format import split_path
from pipeline.datasets.identity import require_split
from pipeline.errors import OneLineArgumentParser, run_cli
from pipeline.framework import load_keras


@run_cli
def main(argv=None):
    parser = OneLineArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="output/augmentation.png", help="PNG file to write")
    parser.add_argument("--samples", type=int, default=8, help="rows: train images shown")
    parser.add_argument("--versions", type=int, default=7, help="augmented versions per image")
    parser.add_argument("--seed", type=int, default=0)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    config = config_from_arguments(args)
    # Missing data names the config's own builder, before Keras loads.
    require_split(config.data, split_path(config.data.dataset_dir, config.data.train_split))
    load_keras()
    from pipeline.io.preview import augmentation_grid, write_png

    if not config.data.augment:
        print("note: data.augment is empty in this config: the grid shows the stored images only")
    grid = augmentation_grid(config, samples=args.samples, versions=args.versions, seed=args.seed)
    print(f"wrote {write_png(grid, args.output)}")


if __name__ == "__main__":
    sys.exit(main())
