"""Top-5 classes, with names and probabilities, of an image or of every image in a folder.

python predict.py my_photo.jpg --model output/checkpoints/epoch_0030.keras
python predict.py photos/ --model output/checkpoints/epoch_0030.keras --top 3
"""

import argparse
import sys

from pipeline.errors import OneLineArgumentParser, run_cli
from pipeline.framework import load_keras


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
    load_keras()
    from pipeline.models import load_model
    from pipeline.prediction import class_names_for, image_paths, predict_files, stored_side

    paths = image_paths(args.target)
    model = load_model(args.model)
    names = class_names_for(args.model, model.output_shape[-1], args.dataset)
    side = stored_side(args.model, args.dataset)
    predictions, skipped = predict_files(model, paths, names, top=args.top, side=side)
    for prediction in predictions:
        ranked = ", ".join(f"{name} {probability:.1%}" for name, probability in prediction.top)
        print(f"{prediction.path}: {ranked}")
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not predictions:
        return 2


if __name__ == "__main__":
    sys.exit(main())
