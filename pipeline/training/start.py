"""Train, or resume: what the run directory and the config decide, before Keras loads.

`train` takes the run directory's lock, then decides where the run starts and with
which config (pipeline.runs.run_state and start_config, which write nothing) and
refuses what cannot be: a used directory without --resume or --overwrite, nothing
to resume, a refused rewind, a finished decay, a bad --lr. Only then is the framework
loaded and the fit run (pipeline.training.engine). So a refusal answers in a moment,
not after the 7-20 s TensorFlow takes to load, and this module imports no framework.
"""

import dataclasses
import math
from pathlib import Path

from pipeline.advice import Invocation
from pipeline.config import ExperimentConfig
from pipeline.errors import UserError
from pipeline.framework import avoid_onednn_crash, load_keras
from pipeline.runs.history import load_history
from pipeline.runs.run_dir import run_lock
from pipeline.runs.run_state import StartPoint, StartRequest, resolve_start
from pipeline.runs.start_config import check_epochs, config_for_start


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """How a training call ended: the last checkpoint written, the run's history
    (one list per column, one entry per epoch) and why it stopped."""

    run_dir: Path
    final_checkpoint: Path | None
    history: dict
    # The ctrl+c or SIGTERM that stopped it (None: it was not stopped).
    interrupted: object | None = None
    # Why the run stopped with a loss that is not finite (None: it did not).
    divergence: str | None = None
    # The config the run trained with (its run directory's config.json).
    config: ExperimentConfig | None = None

    @property
    def ended(self) -> str:
        """ "finished", "interrupted" (resume it) or "diverged" (resume at a lower rate)."""
        if self.interrupted is not None:
            return "interrupted"
        return "diverged" if self.divergence else "finished"


@dataclasses.dataclass(frozen=True)
class PreparedStart:
    """What was decided before the framework loads: the run directory this process
    writes, the start, the config it continues with and the notes on that config."""

    config: ExperimentConfig
    run_dir: Path
    start: StartPoint
    notes: tuple[str, ...]
    invocation: Invocation
    config_source: str


def train(
    config: ExperimentConfig,
    *,
    run_dir=None,
    model_path=None,
    start_epoch: int | None = None,
    resume: bool = False,
    learning_rate: float | None = None,
    overwrite: bool = False,
    callbacks=(),
    invocation: Invocation | None = None,
    config_source: str = "the config",
    config_given: bool | None = None,
) -> TrainingResult:
    """Train, or resume, the config's model; everything it writes goes to `run_dir`.

    Resuming: `resume` takes the checkpoint latest.json names (an epoch or an
    interrupt); `start_epoch` alone takes epoch_N of the run directory;
    `model_path` takes that file. `learning_rate` (--lr) is the rate of the very
    next batch, the rest of the schedule rescaled to it (pipeline.runs.learning_rate);
    on a fresh start it is the starting rate. `callbacks` are added to the fit's;
    `invocation` is the command as given, which refusals advise with what must change;
    `config_source` names the file the config came from in errors; `config_given`
    says whether the rate changes of `config` are the user's own (default: a --config
    or a --set of training.rate_changes in `invocation`), which replace the run's.
    """
    if learning_rate is not None and not (math.isfinite(learning_rate) and learning_rate > 0):
        raise UserError(f"--lr must be a finite number > 0, got {learning_rate}")
    given_dir = Path(run_dir or config.checkpoints)
    # Advice names the run directory given (a worker finds its own copy from it).
    invocation = invocation or Invocation(checkpoints=str(given_dir))
    if config_given is None:
        config_given = _config_given(invocation)
    own_dir = _own_run_dir(given_dir, config.training.distribute)
    request = StartRequest(resume, start_epoch, model_path, overwrite, invocation)
    with run_lock(own_dir):
        prepared = prepare_start(config, own_dir, request, config_given, config_source)
        onednn = avoid_onednn_crash(min(prepared.config.model.network().filters[1:]))
        if onednn:
            prepared = dataclasses.replace(prepared, notes=(*prepared.notes, onednn))
        load_keras()
        from pipeline.training.engine import fit_prepared

        return fit_prepared(prepared, learning_rate, tuple(callbacks))


def prepare_start(
    config: ExperimentConfig, run_dir: Path, request: StartRequest, config_given, source
) -> PreparedStart:
    """Where the run starts and the config it continues with; refuses what cannot be.
    Writes nothing; called under the run directory's lock."""
    start = resolve_start(run_dir, request)
    if start.checkpoint is not None:
        # The history this start continues is read back now: a damaged one is
        # refused before anything is written.
        load_history(run_dir, 10**9)
    config, notes = config_for_start(config, run_dir, start, config_given)
    check_epochs(start, config.training, run_dir, request.invocation)
    return PreparedStart(config, run_dir, start, tuple(notes), request.invocation, source)


def _config_given(invocation: Invocation) -> bool:
    """Whether the user gave rate changes of their own: a --config, or a --set of them."""
    keys = {item.partition("=")[0].strip() for item in invocation.overrides}
    return invocation.config is not None or "training.rate_changes" in keys


def _own_run_dir(given_dir: Path, distribute: str) -> Path:
    """Where this process writes: the run directory, or a multi-worker run's worker
    directory (which asks the framework whether it can run several workers)."""
    if distribute != "multiworker":
        return given_dir
    load_keras()
    from pipeline.training.distribute import worker_run_dir

    return worker_run_dir(given_dir, distribute)
