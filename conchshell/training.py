"""One training machinery for every loop in conchshell.

The TCNN encoder, the Jukebox codec, the generator's regression and the GAN
all train through the pieces of this module, so they agree on:

* **the history**: a list of dicts with the same keys everywhere. ``"step"``
  (optimiser steps so far) and/or ``"epoch"``, ``"lr"``, the loss terms
  (``"loss"`` for single-loss loops), ``"seconds"`` (wall time since the fit
  started) and ``"n_skipped"`` (updates skipped so far). A step whose update
  was skipped carries ``"skipped"`` (or ``"skipped_<part>"``) with the reason.
  :func:`save_history` writes it as JSON.
* **the progress display**: :func:`progress`, a tqdm bar that stays quiet when
  ``verbose`` is 0 and writes a plain line every few seconds, instead of a
  redraw per update, when stderr is a file.
* **the NaN policy**: :func:`guarded_step` skips the update of a step whose
  loss or gradient is not finite, records why in the step's record, logs a
  warning through the ``"conchshell"`` logger, and :class:`TrainingLog`
  counts the skips.
* **learning-rate schedules**: torch's own schedulers
  (:func:`cosine_schedule`, :func:`budget_cosine_schedule`,
  :func:`constant_schedule`), stepped once per step or per epoch.
* **early stopping**: :class:`EarlyStopping` keeps the best weights and puts
  them back.

Examples
--------
>>> import torch
>>> model = torch.nn.Linear(2, 1)
>>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
>>> schedule = cosine_schedule(optimizer, total_steps=3)
>>> with TrainingLog(desc="demo", total=3, verbose=0) as log:
...     for step in range(1, 4):
...         record = {"step": step, "lr": optimizer.param_groups[0]["lr"]}
...         loss = model(torch.ones(4, 2)).pow(2).mean()
...         optimizer.zero_grad()
...         took = guarded_step(loss, model, optimizer, record)
...         record["loss"] = float(loss.detach())
...         schedule.step()
...         _ = log.log(record)
>>> [round(r["lr"], 3) for r in log.history]
[0.1, 0.075, 0.025]
>>> log.history[-1]["n_skipped"]
0
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler
from tqdm import auto as tqdm_auto
from tqdm.auto import tqdm

from conchshell._validation import finite_flag
from conchshell.io import atomic_write

__all__ = [
    "EarlyStopping",
    "TrainingLog",
    "budget_cosine_schedule",
    "constant_schedule",
    "cosine_schedule",
    "finite_everywhere",
    "grads_finite",
    "guarded_step",
    "load_history",
    "progress",
    "save_history",
]

logger = logging.getLogger("conchshell")

#: Seconds between two redraws of a progress bar that writes to a file, not a terminal.
FILE_REFRESH_SECONDS = 10.0


# ---------------------------------------------------------------- progress display
class _LineWriter:
    """Turn tqdm's carriage-return redraws into separate lines.

    Written to a file, ``"\\r"`` redraws pile up on one endless line; one
    line per redraw is what ``tail``, ``grep`` and editors can read.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._started = False

    def write(self, text: str) -> int:
        if not self._started and text.startswith("\r"):
            text = text[1:]  # no empty line before the first redraw
        self._started = self._started or bool(text)
        return self.stream.write(text.replace("\r", "\n"))

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed or detached stream
        return False


def progress(
    total: int | None,
    *,
    desc: str,
    verbose: bool | int,
    unit: str = "step",
    initial: int = 0,
    leave: bool = True,
    file: TextIO | None = None,
) -> tqdm:
    """The one progress display of every training loop.

    Parameters
    ----------
    total : int or None
        Number of updates expected (steps or epochs); ``None`` shows a plain
        counter (a time budget leaves the step count open).
    desc : str
        Label in front of the bar (``"TCNN"``, ``"codec"``, ``"GAN"``).
    verbose : bool or int
        Falsy disables the display entirely.
    unit : str, default="step"
        What one update counts.
    initial : int, default=0
        Updates already done (a resumed run).
    leave : bool, default=True
        Keep the finished bar on screen (always, in a file).
    file : text stream or None, default=None
        Where to write; ``None`` is ``sys.stderr``.

    Returns
    -------
    tqdm
        The bar. In a terminal it redraws in place; written to a file (``make
        demo > log``) it writes an ASCII line at most every
        :data:`FILE_REFRESH_SECONDS` seconds rather than a redraw per update.

    Raises
    ------
    ValueError
        When ``total`` or ``initial`` is negative.
    """
    if total is not None and total < 0:
        raise ValueError(f"total must be None or >= 0, got {total!r}")
    if initial < 0:
        raise ValueError(f"initial must be >= 0, got {initial!r}")
    stream = sys.stderr if file is None else file
    options: dict[str, Any] = {}
    # tqdm.auto picks a widget in Jupyter, which draws itself; only a text bar needs this.
    text_bar = tqdm_auto.notebook_tqdm is tqdm_auto.std_tqdm
    if text_bar and not _is_terminal(stream):
        options = {"mininterval": FILE_REFRESH_SECONDS, "ascii": True}
        stream = _LineWriter(stream)
        leave = True  # a file cannot take a line back: clearing it would leave a blank one
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        leave=leave,
        disable=not verbose,
        file=stream,
        **options,
    )


# ---------------------------------------------------------------- history
class TrainingLog:
    """Records a fit's history in the standard format and drives its progress bar.

    Parameters
    ----------
    desc : str
        Name of the loop, shown on the progress bar.
    total : int or None
        Records expected (steps or epochs), ``None`` when open-ended.
    verbose : bool or int
        Falsy hides the progress bar.
    unit : str, default="step"
        What one record counts, for the bar.
    initial : int, default=0
        Records already done (a resumed run), for the bar.
    history : list of dict or None, default=None
        A history to continue (warm start, resume): new records are appended
        to this very list and the skip count goes on from its last record's
        ``"n_skipped"``. ``None`` starts an empty one.
    max_time : float or None, default=None
        Wall-clock budget in seconds for :meth:`out_of_time`.
    leave : bool, default=True
        Keep the finished progress bar on screen.

    Attributes
    ----------
    history : list of dict
        The records, oldest first.
    n_skipped : int
        Updates skipped so far (records with a ``"skipped..."`` key plus
        :meth:`count_skipped`).
    bar : tqdm
        The progress bar.

    Raises
    ------
    TypeError
        When ``history`` is not a list.
    ValueError
        When ``max_time`` is not a positive number of seconds.

    Notes
    -----
    ``"seconds"`` counts from the moment this log was created, so a resumed
    run starts again from zero. :meth:`out_of_time` reads this process's clock
    only: under ``torch.distributed`` the caller must make all ranks agree.
    """

    def __init__(
        self,
        *,
        desc: str,
        total: int | None,
        verbose: bool | int,
        unit: str = "step",
        initial: int = 0,
        history: list[dict[str, Any]] | None = None,
        max_time: float | None = None,
        leave: bool = True,
    ) -> None:
        if history is not None and not isinstance(history, list):
            raise TypeError(f"history must be a list of dicts or None, got {type(history)!r}")
        if max_time is not None and not (
            isinstance(max_time, int | float) and not isinstance(max_time, bool) and max_time > 0
        ):
            raise ValueError(f"max_time must be positive seconds or None, got {max_time!r}")
        self.desc = desc
        self.max_time = None if max_time is None else float(max_time)
        self.history: list[dict[str, Any]] = [] if history is None else history
        last = self.history[-1] if self.history else {}
        self.n_skipped = int(last.get("n_skipped", 0)) if isinstance(last, Mapping) else 0
        self.bar = progress(
            total, desc=desc, verbose=verbose, unit=unit, initial=initial, leave=leave
        )
        self._start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds since this log was created."""
        return time.perf_counter() - self._start

    def out_of_time(self) -> bool:
        """Whether the ``max_time`` budget is spent (always False without one).

        Returns
        -------
        bool
        """
        return self.max_time is not None and self.elapsed > self.max_time

    def count_skipped(self, n: int = 1) -> None:
        """Count skipped updates that no record of their own carries.

        An epoch loop writes one record for many steps: it counts the steps
        it skipped here, and the epoch's record shows them in ``"n_skipped"``.

        Parameters
        ----------
        n : int, default=1
            Updates skipped.

        Raises
        ------
        ValueError
            When ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        self.n_skipped += int(n)

    def log(self, record: dict[str, Any], **postfix_keys: str | float) -> dict[str, Any]:
        """Complete a record, append it to the history and advance the bar.

        Parameters
        ----------
        record : dict
            The step's or epoch's values. Gains ``"seconds"`` (elapsed time,
            rounded to milliseconds) and ``"n_skipped"`` (the running count,
            which goes up by one when the record carries a key starting with
            ``"skipped"``).
        **postfix_keys : str or float
            What the bar shows after it, as ``label=value``: a string names a
            key of ``record`` whose value is shown, a number is shown as is.
            Without any, the bar shows ``record["loss"]`` when there is one.

        Returns
        -------
        dict
            ``record`` itself, completed.

        Raises
        ------
        TypeError
            When ``record`` is not a dict.
        ValueError
            When a postfix names a key that ``record`` lacks.
        """
        if not isinstance(record, dict):
            raise TypeError(f"record must be a dict, got {type(record).__name__}")
        if any(str(key).startswith("skipped") for key in record):
            self.n_skipped += 1
        record["seconds"] = round(self.elapsed, 3)
        record["n_skipped"] = self.n_skipped
        self.history.append(record)
        if not self.bar.disable:
            self.bar.set_postfix(self._postfix(record, postfix_keys), refresh=False)
        self.bar.update(1)  # redraws only as often as the bar's mininterval allows
        return record

    def _postfix(self, record: dict[str, Any], keys: dict[str, str | float]) -> dict[str, str]:
        if not keys and "loss" in record:
            keys = {"loss": "loss"}
        shown = {}
        for label, key in keys.items():
            if isinstance(key, str):
                if key not in record:
                    raise ValueError(f"postfix {label}={key!r} names no key of the record")
                value = record[key]
            else:
                value = key
            shown[label] = f"{value:.4g}" if isinstance(value, float) else str(value)
        if self.n_skipped:
            shown["skipped"] = str(self.n_skipped)
        return shown

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plain(value: Any) -> Any:
    # json's fallback for numpy scalars and one-element tensors that slip into records.
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"history value {value!r} of type {type(value).__name__} is not JSON data")


def save_history(history: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write a history as JSON, atomically.

    Parameters
    ----------
    history : list of dict
        The records (``history_`` of a fitted component).
    path : str or os.PathLike
        Destination file; its folder must exist.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    TypeError
        When ``history`` is not a list of dicts, or holds a value that is not
        JSON data (a number, string, bool, None, list or dict).

    Notes
    -----
    NaN and infinities are written as ``NaN``, ``Infinity`` and
    ``-Infinity``, as Python's :mod:`json` writes and reads them, so a history
    round-trips exactly (a validation loss without a validation split is NaN).
    Strict JSON readers, such as JavaScript's ``JSON.parse``, reject them.
    """
    if not isinstance(history, list):
        raise TypeError(f"history must be a list of dicts, got {type(history).__name__}")
    for i, record in enumerate(history):
        if not isinstance(record, Mapping):
            raise TypeError(f"history[{i}] must be a dict, got {type(record).__name__}")
    path = Path(path)
    text = json.dumps(history, default=_plain, allow_nan=True)
    with atomic_write(path, "w") as handle:
        handle.write(text)
    return path


def load_history(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a history written by :func:`save_history`.

    Parameters
    ----------
    path : str or os.PathLike
        The JSON file.

    Returns
    -------
    list of dict

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not JSON or not a list of dicts.
    """
    path = Path(path)
    try:
        history = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a JSON history: {exc}") from exc
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        raise ValueError(f"{path} does not hold a list of records")
    return history


# ---------------------------------------------------------------- NaN policy
def _on_every_rank(flag: torch.Tensor) -> bool:
    """Whether a boolean flag holds on every process (all-reduce MIN under DDP)."""
    ok = flag.to(torch.float32).reshape(1)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
    return bool(ok.item())


def finite_everywhere(value: torch.Tensor) -> bool:
    """Whether every element of ``value`` is finite, on every process.

    Parameters
    ----------
    value : torch.Tensor
        A loss or an output.

    Returns
    -------
    bool

    Raises
    ------
    TypeError
        When ``value`` is not a tensor.

    Notes
    -----
    Under ``torch.distributed`` every rank must call this at the same point:
    all ranks skip a step together, since a rank that skipped its backward
    while the others entered the gradient all-reduce would hang them.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"value must be a torch.Tensor, got {type(value).__name__}")
    return _on_every_rank(finite_flag(value))


def grads_finite(module: torch.nn.Module) -> bool:
    """Whether every gradient of ``module``'s parameters is finite, on every process.

    Parameters
    ----------
    module : torch.nn.Module
        Parameters without a gradient are ignored.

    Returns
    -------
    bool

    Raises
    ------
    TypeError
        When ``module`` is not a torch module.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    params = list(module.parameters())
    flags = [finite_flag(p.grad) for p in params if p.grad is not None]
    if not flags:
        # Still take part in the all-reduce: every rank must make the same calls.
        device = params[0].device if params else torch.device("cpu")
        return _on_every_rank(torch.ones((), dtype=torch.bool, device=device))
    # One synchronisation for all the parameters rather than one each.
    return _on_every_rank(torch.stack([f.to(flags[0].device) for f in flags]).all())


def guarded_step(
    loss: torch.Tensor,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    record: dict[str, Any],
    key: str = "skipped",
    *,
    desc: str | None = None,
    clip: float | None = None,
) -> bool:
    """Back-propagate ``loss`` and step ``optimizer``, unless something is not finite.

    The one NaN policy: a step whose loss is not finite skips its backward; a
    step with a non-finite gradient skips the optimiser's update. Either way
    the weights stay as they were, ``record[key]`` says why, and one warning
    goes to the ``"conchshell"`` logger. The caller zeroes the gradients
    before the step, as usual.

    Parameters
    ----------
    loss : torch.Tensor
        The scalar loss of the step.
    module : torch.nn.Module
        The module whose gradients are checked (the one ``optimizer`` updates).
    optimizer : torch.optim.Optimizer
        Stepped when everything is finite.
    record : dict
        The step's record; gains ``record[key]`` (``"non-finite loss"`` or
        ``"non-finite gradient"``) on a skip. Its ``"step"`` or ``"epoch"``,
        when present, is named in the warning.
    key : str, default="skipped"
        Where the reason goes; must start with ``"skipped"`` so that
        :class:`TrainingLog` counts it (``"skipped_g"`` for a GAN's generator).
    desc : str or None, default=None
        Name of the loop, for the warning.
    clip : float or None, default=None
        Clip the gradients' total norm to this before the update (checked
        finite first; :func:`torch.nn.utils.clip_grad_norm_`).

    Returns
    -------
    bool
        Whether the optimiser stepped.

    Raises
    ------
    TypeError
        When ``loss`` is not a tensor or ``record`` not a dict.
    ValueError
        When ``key`` does not start with ``"skipped"``.
    """
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss must be a torch.Tensor, got {type(loss).__name__}")
    if not isinstance(record, dict):
        raise TypeError(f"record must be a dict, got {type(record).__name__}")
    if not (isinstance(key, str) and key.startswith("skipped")):
        raise ValueError(f"key must start with 'skipped', got {key!r}")
    if not finite_everywhere(loss):
        reason = "non-finite loss"
    else:
        loss.backward()
        if grads_finite(module):
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
            optimizer.step()
            return True
        reason = "non-finite gradient"
    record[key] = reason
    where = "".join(f" {name} {record[name]}" for name in ("epoch", "step") if name in record)
    logger.warning("%s: update skipped at%s: %s", desc or "training", where or " a step", reason)
    return False


# ---------------------------------------------------------------- early stopping
class EarlyStopping:
    """Stop when a watched value stops falling, and keep the best weights.

    Parameters
    ----------
    patience : int or None
        Updates without a new best value before :meth:`update` says stop.
        ``None`` never stops, but still keeps the best weights.

    Attributes
    ----------
    best_value : float
        The lowest value seen (``inf`` before any finite one).
    best_epoch : int or None
        The ``epoch`` passed with it.
    best_state : dict or None
        A deep copy of the module's state dict at the best value.
    waited : int
        Updates since the last improvement.

    Raises
    ------
    TypeError, ValueError
        When ``patience`` is neither None nor a positive integer.
    """

    def __init__(self, patience: int | None) -> None:
        if patience is not None:
            if not isinstance(patience, int | np.integer) or isinstance(patience, bool):
                raise TypeError(f"patience must be a positive int or None, got {patience!r}")
            if patience < 1:
                raise ValueError(f"patience must be a positive int or None, got {patience!r}")
        self.patience = None if patience is None else int(patience)
        self.best_value = math.inf
        self.best_epoch: int | None = None
        self.best_state: dict[str, Any] | None = None
        self.waited = 0

    def update(self, value: float, module: torch.nn.Module, epoch: int) -> bool:
        """Take the latest value; return whether training should stop.

        Parameters
        ----------
        value : float
            The watched value (lower is better), e.g. the validation loss. NaN
            never counts as an improvement.
        module : torch.nn.Module
            Its state dict is copied when ``value`` is a new best.
        epoch : int
            Remembered as :attr:`best_epoch` with a new best.

        Returns
        -------
        bool
            True once ``patience`` updates in a row brought no new best.
        """
        value = float(value)
        if value < self.best_value:  # False for NaN
            self.best_value, self.best_epoch, self.waited = value, epoch, 0
            self.best_state = copy.deepcopy(module.state_dict())
            return False
        self.waited += 1
        return self.patience is not None and self.waited >= self.patience

    def restore(self, module: torch.nn.Module) -> bool:
        """Load the best weights into ``module``, when any were kept.

        Parameters
        ----------
        module : torch.nn.Module
            The module that was trained.

        Returns
        -------
        bool
            Whether weights were loaded.
        """
        if self.best_state is None:
            return False
        module.load_state_dict(self.best_state)
        return True


# ---------------------------------------------------------------- learning-rate schedules
def _check_optimizer(optimizer: object) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer)!r}")


class _ClosedFormCosine(CosineAnnealingLR):
    """torch's CosineAnnealingLR with every rate from the closed form.

    torch updates the rate recursively from the previous one, which drifts
    from ``0.5 * lr * (1 + cos(pi * t / T))`` in the last bits (40 of 60
    epochs at T=60): weights trained under it differ from the closed form's.
    """

    def get_lr(self) -> list[float]:
        done = self.last_epoch / self.T_max
        return [
            self.eta_min + (base_lr - self.eta_min) * 0.5 * (1.0 + math.cos(math.pi * done))
            for base_lr in self.base_lrs
        ]


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
    """Anneal every group's rate from its initial value to zero over ``total_steps``.

    Step it once per optimiser step (or per epoch, with ``total_steps`` the
    number of epochs): update ``t`` uses ``lr * 0.5 * (1 + cos(pi * t /
    total_steps))``, ``t = 0, 1, ...``.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Its current rates are the starting rates.
    total_steps : int
        Length of the schedule.

    Returns
    -------
    torch.optim.lr_scheduler.CosineAnnealingLR
        ``T_max=total_steps``, ``eta_min=0``, each rate computed in closed
        form (torch's recursive update drifts in the last bits).

    Raises
    ------
    TypeError
        When ``optimizer`` is not an optimiser or ``total_steps`` not an int.
    ValueError
        When ``total_steps`` is not positive.
    """
    _check_optimizer(optimizer)
    if not isinstance(total_steps, int | np.integer) or isinstance(total_steps, bool):
        raise TypeError(f"total_steps must be a positive int, got {total_steps!r}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    return _ClosedFormCosine(optimizer, T_max=int(total_steps), eta_min=0.0)


def budget_cosine_schedule(
    optimizer: torch.optim.Optimizer, progress_fn: Callable[[], float]
) -> LRScheduler:
    """Cosine annealing over a budget that may be time as well as steps.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Its current rates are the starting rates.
    progress_fn : callable () -> float
        The share of the budget spent, read each time the scheduler steps
        (and once when it is built): for a budget of steps and seconds,
        ``max(step / max_steps, elapsed / max_time)``. Values past 1 hold the
        rate at zero.

    Returns
    -------
    torch.optim.lr_scheduler.LambdaLR
        Scaling each initial rate by ``0.5 * (1 + cos(pi * min(progress, 1)))``.

    Raises
    ------
    TypeError
        When ``optimizer`` is not an optimiser or ``progress_fn`` not callable.
    ValueError
        When ``progress_fn`` returns a negative or non-finite share.
    """
    _check_optimizer(optimizer)
    if not callable(progress_fn):
        raise TypeError(f"progress_fn must be callable, got {type(progress_fn).__name__}")

    def factor(_: int) -> float:
        done = float(progress_fn())
        if not (math.isfinite(done) and done >= 0):
            raise ValueError(f"progress_fn must return a share >= 0, got {done!r}")
        return 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))

    return LambdaLR(optimizer, factor)


def constant_schedule(optimizer: torch.optim.Optimizer) -> LRScheduler:
    """Keep every group's rate where it is (a no-op with a scheduler's interface).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        The optimiser.

    Returns
    -------
    torch.optim.lr_scheduler.LambdaLR
        With a factor of 1.

    Raises
    ------
    TypeError
        When ``optimizer`` is not an optimiser.
    """
    _check_optimizer(optimizer)
    return LambdaLR(optimizer, lambda _: 1.0)
