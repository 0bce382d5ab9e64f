"""Learning-rate range test: a copy of the config's network trained for a few hundred
batches at an exponentially rising rate; the rate to start from, and the command.

python find_lr.py                                   # the default preset (the digits)
python find_lr.py --config config/cifar10_resnet56_ctrl_c.toml --min 1e-5 --max 3
python find_lr.py --checkpoints output/run          # the printed command trains there

Writes lr_range.png (the smoothed loss against the rate, log scale, the suggestion
marked) and lr_range.json into --output (default output/lr_range); no run directory
is made or changed.
"""

import sys

from pipeline.api import LR_RANGE_DEFAULTS, LR_RANGE_OUTPUT, find_lr
from pipeline.cli import add_config_arguments
from pipeline.errors import OneLineArgumentParser, run_cli


def parse(argv):
    parser = OneLineArgumentParser(description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument("--min", type=float, default=LR_RANGE_DEFAULTS["min_rate"])
    parser.add_argument("--max", type=float, default=LR_RANGE_DEFAULTS["max_rate"])
    parser.add_argument("--batches", type=int, default=LR_RANGE_DEFAULTS["batches"])
    parser.add_argument("--output", default=LR_RANGE_OUTPUT, help="folder for the results")
    parser.add_argument("--checkpoints", help="run directory the printed command trains in")
    return parser.parse_args(argv)


@run_cli
def main(argv=None):
    args = parse(argv)
    result = find_lr(
        args.config, overrides=args.overrides, min_rate=args.min, max_rate=args.max,
        batches=args.batches, output=args.output, checkpoints=args.checkpoints,
    )  # fmt: skip
    for note in result["notes"]:
        print(f"note: {note}")
    steepest = result["steepest_fall_rate"]
    fell = f", fastest at {steepest:.3g}" if steepest else ""
    print(
        f"suggested learning rate: {result['suggested_rate']:g} ({result['how']}: "
        f"{result['lowest_loss_rate']:.3g}{fell}; {result['batches']} batches, "
        f"{result['stopped']})"
    )
    print(f"wrote {args.output}/lr_range.png and {args.output}/lr_range.json")
    print(f"start a run with it: {result['command']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
