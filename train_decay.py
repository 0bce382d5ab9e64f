"""Train a ResNet with polynomial learning-rate decay (power: training.decay_power).

python train_decay.py --checkpoints output/decay
"""

import sys

from pipeline.cli import train_from_command_line
from pipeline.errors import run_cli


@run_cli
def main(argv=None):
    return train_from_command_line(
        argv, script="train_decay.py", schedule="polynomial", description=__doc__
    )


if __name__ == "__main__":
    sys.exit(main())
