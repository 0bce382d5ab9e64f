"""Train one config with several seeds, then report the spread of their test rank-1 and
rank-5 (mean +- std, best) beside the preset's expected figures.

python repeat_runs.py --seeds 0,1,2 --checkpoints output/repeats/digits
python repeat_runs.py --config config/cifar10_resnet110_paper.toml --seeds 0,1,2,3,4 \\
    --checkpoints output/repeats/resnet110

Each seed is an ordinary run in CHECKPOINTS/seed_<n> (ctrl+c, --resume, rank_accuracy.py
work on it). After a ctrl+c, the same command goes on: finished seeds are kept, the
interrupted one resumes. Writes CHECKPOINTS/repeats.json and CHECKPOINTS/comparison/.
"""

import argparse
import sys

from pipeline.api import repeat_runs
from pipeline.cli import add_config_arguments
from pipeline.errors import (
    DIVERGED_EXIT_CODE,
    INTERRUPTED_EXIT_CODE,
    OneLineArgumentParser,
    UserError,
    run_cli,
)


def seeds_of(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--seeds takes integers separated by commas, got {text!r}") from None


@run_cli
def main(argv=None):
    parser = OneLineArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2", help="seeds, e.g. 0,1,2 (default)")
    parser.add_argument("--checkpoints", required=True, help="folder of the seeds' run dirs")
    parser.add_argument("--epochs", type=int, help="total number of epochs (training.epochs)")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    summary = repeat_runs(
        args.config, seeds_of(args.seeds), checkpoints=args.checkpoints,
        overrides=args.overrides, epochs=args.epochs,
    )  # fmt: skip
    if summary["ended"] != "finished":
        print(
            f"seed {summary['seed']} {summary['ended']} ({summary['run_dir']}); the same "
            f"command goes on: {' '.join(['python', 'repeat_runs.py', *(argv or sys.argv[1:])])}"
        )
        return DIVERGED_EXIT_CODE if summary["ended"] == "diverged" else INTERRUPTED_EXIT_CODE
    from pipeline.evaluation.repeats import format_repeats

    print(format_repeats(summary))
    print(f"picture of every run: {summary['picture']}")
    print(f"summary: {args.checkpoints}/repeats.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
