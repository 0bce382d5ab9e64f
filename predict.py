"""Top-5 classes, with names and probabilities, of an image or of every image in a folder.

python predict.py my_photo.jpg --model output/checkpoints/epoch_0030.keras
python predict.py photos/ --model output/checkpoints/epoch_0030.keras --top 3
"""

import argparse
import sys

from pipeline.datasets.image_folders import printable
from pipeline.errors import OneLineArgumentParser, UserError, run_cli, shown
from pipeline.framework import load_keras
from pipeline.runs.checkpoint_files import read_state


@run_cli
def main(argv=None):
    parser = OneLineArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("target", help="an image file or a folder of images")
    parser.add_argument("--model", required=True, help="a .keras checkpoint")
    parser.add_argument("--dataset", help="dataset directory, for class names the model lacks")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    # The checkpoint's state is read (and checked) before anything loads.
    read_state(args.model)
    load_keras()
    from pipeline.evaluation.prediction import (
        class_names_for,
        image_paths,
        predict_files,
        stored_side,
    )
    from pipeline.models import load_model

    paths = image_paths(args.target)
    model = load_model(args.model)
    num_classes = model.output_shape[-1]
    if args.top > num_classes:
        raise UserError(f"--top must be at most the model's {num_classes} classes, got {args.top}")
    names = class_names_for(args.model, num_classes, args.dataset)
    side = stored_side(args.model, args.dataset)
    predictions, skipped = predict_files(model, paths, names, top=args.top, side=side)
    for prediction in predictions:
        ranked = ", ".join(f"{name} {probability:.1%}" for name, probability in prediction.top)
        # A file name may hold a newline or bytes that are not UTF-8: one line each.
        print(f"{shown(printable(prediction.path))}: {ranked}")
    for path, reason in skipped:
        print(f"skipped {shown(printable(path))}: {reason}", file=sys.stderr)
    if not predictions:
        return 2


if __name__ == "__main__":
    sys.exit(main())
