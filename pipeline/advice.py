"""Advice as data: the command a refusal proposes, built from the command that was refused.

A refusal that names a fixed command drops what the user gave (`--config`, `--set`,
`--lr`) and sends them somewhere else: training another data set, or a loop of
refusals. An `Invocation` is what the user typed, as data; a refusal changes only
what it must (`invocation.command(resume=True, epochs=45)`) and keeps the rest.
No Keras here.
"""

import dataclasses
import shlex


@dataclasses.dataclass(frozen=True)
class Invocation:
    """The options of a training command (train.py, train_decay.py), as given."""

    script: str = "train.py"
    checkpoints: str | None = None
    config: str | None = None
    # The --set overrides, in order.
    overrides: tuple[str, ...] = ()
    resume: bool = False
    start_epoch: int | None = None
    model: str | None = None
    epochs: int | None = None
    lr: float | None = None
    overwrite: bool = False

    @classmethod
    def from_arguments(cls, script: str, args) -> "Invocation":
        """The invocation of train.py's parsed arguments (pipeline.cli.training_parser)."""
        return cls(
            script=script,
            checkpoints=args.checkpoints,
            config=args.config,
            overrides=tuple(args.overrides),
            resume=args.resume,
            start_epoch=args.start_epoch,
            model=args.model,
            epochs=args.epochs,
            lr=args.lr,
            overwrite=args.overwrite,
        )

    def command(self, **changes) -> str:
        """The command line with `changes` (field=value) applied, quoted for a shell.
        Choosing where to start (resume, start_epoch, model) replaces the others."""
        where = {"resume", "start_epoch", "model"}
        if where & set(changes):
            changes = {"resume": False, "start_epoch": None, "model": None, **changes}
        chosen = dataclasses.replace(self, **changes)
        return shlex.join(["python", chosen.script, *chosen.options()])

    def options(self) -> list[str]:
        parts = []
        if self.checkpoints is not None:
            parts += ["--checkpoints", str(self.checkpoints)]
        if self.config is not None:
            parts += ["--config", str(self.config)]
        for override in self.overrides:
            parts += ["--set", override]
        if self.resume:
            parts.append("--resume")
        if self.model is not None:
            parts += ["--model", str(self.model)]
        if self.start_epoch is not None:
            parts += ["--start_epoch", str(self.start_epoch)]
        if self.epochs is not None:
            parts += ["--epochs", str(self.epochs)]
        if self.lr is not None:
            parts += ["--lr", repr(float(self.lr))]  # every digit the user gave
        if self.overwrite:
            parts.append("--overwrite")
        return parts
