"""Train a ResNet at a constant learning rate, the ctrl+c way.

python train.py --checkpoints output/checkpoints
python train.py --checkpoints output/checkpoints --start_epoch 40 --lr 0.01
"""

import sys

from pipeline.cli import add_config_arguments, config_from_arguments
from pipeline.errors import OneLineArgumentParser, run_cli
from pipeline.training import train


def build_parser(description: str) -> OneLineArgumentParser:
    parser = OneLineArgumentParser(description=description)
    parser.add_argument(
        "--checkpoints", default=None, help="run directory (default: from the config)"
    )
    parser.add_argument("--model", default=None, help="checkpoint to resume from")
    parser.add_argument("--start_epoch", type=int, default=None, help="epoch to resume at")
    parser.add_argument("--lr", type=float, default=None, help="learning rate to continue with")
    parser.add_argument("--epochs", type=int, default=None, help="total number of epochs")
    parser.add_argument(
        "--overwrite", action="store_true", help="start over in a used run directory"
    )
    add_config_arguments(parser)
    return parser


def run(argv, schedule: str, description: str) -> None:
    args = build_parser(description).parse_args(argv)
    epochs = [f"training.epochs={args.epochs}"] if args.epochs is not None else []
    config = config_from_arguments(args, *epochs)
    result = train(
        config,
        run_dir=args.checkpoints,
        model_path=args.model,
        start_epoch=args.start_epoch,
        learning_rate=args.lr,
        schedule=schedule,
        overwrite=args.overwrite,
    )
    print(f"final checkpoint: {result.final_checkpoint}")


@run_cli
def main(argv=None):
    run(argv, "constant", __doc__)


if __name__ == "__main__":
    sys.exit(main())
