"""Train a ResNet with polynomial learning-rate decay (power from training.decay_power).

python train_decay.py --checkpoints output/checkpoints_decay
"""

import sys

from pipeline.errors import run_cli
from train import run


@run_cli
def main(argv=None):
    run(argv, "polynomial", __doc__)


if __name__ == "__main__":
    sys.exit(main())
