"""Export a checkpoint for serving: the whole network, normalisation inside, float32 RGB
pixels 0-255 in, class probabilities out. The exported file is run on samples of the
checkpoint's data set beside the Keras model and kept only within the tolerance;
a JSON description (class names, input, the check) is written beside it.

python export.py --checkpoints output/checkpoints --format onnx --output model.onnx
python export.py --model output/checkpoints/epoch_0030.keras --format saved_model --output served
python export.py --checkpoints output/checkpoints --format tflite --float16 --output model.tflite
"""

import argparse
import os
import sys
from pathlib import Path

from pipeline.cli import add_config_arguments, config_from_arguments
from pipeline.errors import OneLineArgumentParser, run_cli
from pipeline.evaluation.export import check_request
from pipeline.evaluation.export_formats import FORMATS, TOLERANCES, ExportRequest
from pipeline.evaluation.export_output import card_path
from pipeline.evaluation.target import evaluation_target
from pipeline.framework import load_keras


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", required=True, help="file (onnx, tflite) or folder")
    parser.add_argument("--model", help="checkpoint (default: latest of the config's run)")
    parser.add_argument("--checkpoints", help="run directory: export its latest checkpoint")
    parser.add_argument("--batch-size", type=int, help="a fixed batch size (default: any)")
    parser.add_argument("--float16", action="store_true", help="tflite: float16 weights")
    parser.add_argument(
        "--tolerance",
        type=float,
        help=f"largest probability difference allowed (default {TOLERANCES['float32']:g}, "
        f"float16 {TOLERANCES['float16']:g})",
    )
    parser.add_argument("--samples", type=int, default=256, help="images the check runs")
    parser.add_argument("--dataset", help="dataset directory or split file for the check")
    parser.add_argument("--split", help="split the check samples (default: the test split)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous export of export.py (recognised by its description)",
    )
    add_config_arguments(parser)
    return parser


@run_cli
def main(argv=None):
    args = build_parser().parse_args(argv)
    config = config_from_arguments(args)
    request = ExportRequest(
        format=args.format,
        output=Path(args.output),
        batch_size=args.batch_size,
        float16=args.float16,
        tolerance=args.tolerance,
        overwrite=args.overwrite,
        samples=args.samples,
    )
    # What the export reads: no folder holding it is ever replaced by the export.
    run = args.checkpoints or (None if args.model else config.checkpoints)
    sources = [path for path in (args.model, run, args.dataset) if path]
    check_request(request, os.environ.get("KERAS_BACKEND", "tensorflow"), sources)
    target = evaluation_target(
        config, model=args.model, checkpoints=args.checkpoints, dataset=args.dataset,
        split=args.split,
    )  # fmt: skip
    for note in target.notes:
        print(f"note: {note}")
    load_keras()
    from pipeline.datasets.hdf5_reader import read_split_info
    from pipeline.evaluation.export import export_and_check, sample_images
    from pipeline.evaluation.rank_accuracy import check_class_names
    from pipeline.models import in_float32, load_model

    info = read_split_info(target.split_file)
    check_class_names(target.model_path, info)
    # Converters and serving runtimes run float32: a model trained in bfloat16 is exported
    # computing in float32, from the same (float32) weights.
    model = in_float32(load_model(target.model_path))
    images = sample_images(model, target.split_file, request.samples)
    card = {
        "format": request.format,
        "checkpoint": str(target.model_path),
        "precision": request.precision,
        "input": {
            "name": "image",
            "shape": [request.batch_size, *model.input_shape[1:]],
            "dtype": "float32",
            "pixels": "RGB, 0-255; the normalisation is inside the model",
        },
        "output": {"name": "probabilities", "classes": info.num_classes},
        "class_names": list(info.class_names),
        "checked_on": str(target.split_file),
    }
    card = export_and_check(model, images, request, card)
    check = card["check"]
    print(
        f"exported {target.model_path} as {request.format} ({request.precision}): {request.output}"
    )
    print(
        f"check: {check['samples']} samples of {target.split_file}: largest probability "
        f"difference {check['max_difference']:.3g} (tolerance {check['tolerance']:g}), top-1 "
        f"agreement {check['top1_agreement']:.2%}"
    )
    print(f"description: {card_path(request.output)}")


if __name__ == "__main__":
    sys.exit(main())
