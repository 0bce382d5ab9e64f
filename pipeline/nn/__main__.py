"""python -m pipeline.nn summary PRESET [--classes N] [--input-shape H,W,C] [--layers] [--plot PNG]
python -m pipeline.nn list"""

import argparse
import sys

from pipeline.errors import OneLineArgumentParser, UserError, run_cli
from pipeline.framework import load_keras


def parse_shape(text: str) -> tuple:
    try:
        return tuple(None if part in ("", "None") else int(part) for part in text.split(","))
    except ValueError:
        raise UserError(
            f"--input-shape must look like 224,224,3 or None,None,3, got {text!r}"
        ) from None


@run_cli
def main(argv=None):
    parser = OneLineArgumentParser(
        prog="python -m pipeline.nn",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the example lines
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the presets and their sources")
    summary = commands.add_parser("summary", help="shapes, parameters and multiply-adds")
    summary.add_argument("preset")
    summary.add_argument("--classes", type=int, default=10)
    summary.add_argument("--input-shape", type=parse_shape, default=None)
    summary.add_argument("--layers", action="store_true", help="one row per layer")
    summary.add_argument("--plot", help="also draw the architecture to this PNG")
    args = parser.parse_args(argv)
    from pipeline.nn.presets import PRESETS, build_preset, spec_of

    if args.command == "list":  # no framework needed
        for name, spec in PRESETS.items():
            print(f"{name:42s} depth {spec.depth:5d}  {spec.source}")
        return
    spec_of(args.preset)  # an unknown name is a one-line error before Keras is loaded
    load_keras()
    from pipeline.nn.summary import plot, summarize_preset

    print(summarize_preset(args.preset, args.classes, args.input_shape, args.layers))
    if args.plot:
        print(plot(build_preset(args.preset, args.classes, args.input_shape), args.plot))


if __name__ == "__main__":
    sys.exit(main())
