"""Train a ResNet with the config's schedule (constant by default: the ctrl+c way).

python train.py --checkpoints output/checkpoints
python train.py --checkpoints output/checkpoints --start_epoch 20 --lr 0.005
"""

import sys

from pipeline.cli import train_from_command_line
from pipeline.errors import run_cli


@run_cli
def main(argv=None):
    return train_from_command_line(argv, script="train.py", schedule=None, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
