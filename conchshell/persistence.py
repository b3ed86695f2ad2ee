"""Saving and loading a fitted :class:`~conchshell.ImageToMusic` as a folder.

A model folder holds three files:

``params.json``
    The estimator's and every component's class and parameters, the category
    names and the level. Classes are looked up in :data:`COMPONENT_CLASSES`, an
    explicit registry: loading builds those estimator classes and nothing else,
    and never calls a function named in the file.
``model.safetensors``
    Weights and small fitted attributes (no pickle).
``history.json``
    The GAN's training history.
"""

from __future__ import annotations

import ctypes
import inspect
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from conchshell._validation import all_finite, check_path
from conchshell._version import __version__
from conchshell.io import _flatten as flatten
from conchshell.io import atomic_write, load_tree, parse_tree, save_tree
from conchshell.levels import level_index
from conchshell.training import save_history

__all__ = [
    "COMPONENTS",
    "SaveLoadMixin",
    "build",
    "component_classes",
    "describe",
    "load_model",
    "save_model",
]

#: The slots of :class:`~conchshell.ImageToMusic`, in the order data flows.
COMPONENTS = (
    "encoder",
    "forger",
    "extractor",
    "codec",
    "generator",
    "discriminator",
    "loss",
    "denoiser",
)
MODEL_FILE = "model.safetensors"
PARAMS_FILE = "params.json"
HISTORY_FILE = "history.json"
_MODEL_FILES = {MODEL_FILE, PARAMS_FILE, HISTORY_FILE, ".conchshell-saving"}

_ATTR_SKIP = {"module_", "device_"}


def component_classes() -> dict[str, type[BaseEstimator]]:
    """The registry of classes a model folder may name, by dotted path.

    Returns
    -------
    dict of str to type
        ``"conchshell.image.tcnn.TCNNEncoder"`` -> the class, and so on.
    """
    from conchshell.codec.jukebox import JukeboxCodec
    from conchshell.estimator import ImageToMusic
    from conchshell.gan.discriminator import MultiScaleDiscriminator
    from conchshell.gan.flow import FlowGenerator
    from conchshell.gan.generator import Generator
    from conchshell.gan.losses import ConchShellLoss
    from conchshell.gan.mosaic import MosaicGenerator
    from conchshell.image.forging import TemporalForger
    from conchshell.image.tcnn import TCNNEncoder
    from conchshell.image.vgg import VGGEncoder
    from conchshell.postprocess import SpectralGate
    from conchshell.video.i3d import I3DExtractor

    classes = (
        ImageToMusic,
        TCNNEncoder,
        VGGEncoder,
        TemporalForger,
        I3DExtractor,
        JukeboxCodec,
        Generator,
        FlowGenerator,
        MosaicGenerator,
        MultiScaleDiscriminator,
        ConchShellLoss,
        SpectralGate,
    )
    return {f"{c.__module__}.{c.__qualname__}": c for c in classes}


def _unfrozen(est: BaseEstimator) -> BaseEstimator:
    return est.estimator if isinstance(est, FrozenEstimator) else est


def describe(est: BaseEstimator, fitted: bool = False) -> dict[str, Any]:
    """JSON description of an estimator: class path and parameters.

    A component wrapped in :class:`sklearn.frozen.FrozenEstimator` is described
    as the component itself, marked ``"frozen"``.

    Parameters
    ----------
    est : BaseEstimator
        The estimator (its parameters only, unless ``fitted``).
    fitted : bool, default=False
        Also describe the fitted components (``encoder_``, ...).

    Returns
    -------
    dict
        ``{"class": dotted path, "params": {...}}`` (and ``"fitted"``).
    """
    frozen = isinstance(est, FrozenEstimator)
    est = _unfrozen(est)
    params: dict[str, Any] = {}
    for key, value in est.get_params(deep=False).items():
        if isinstance(value, BaseEstimator):
            params[key] = {"__estimator__": describe(value)}
        elif isinstance(value, Path):
            params[key] = str(value)
        elif isinstance(value, tuple):
            params[key] = {"__tuple__": list(value)}
        elif isinstance(value, np.random.RandomState):
            params[key] = None
        else:
            params[key] = value
    desc: dict[str, Any] = {
        "class": f"{type(est).__module__}.{type(est).__qualname__}",
        "params": params,
    }
    if frozen:
        desc["frozen"] = True
    if fitted:
        desc["fitted"] = {
            name: describe(getattr(est, f"{name}_"))
            for name in COMPONENTS
            if getattr(est, f"{name}_", None) is not None
        }
    return desc


def build(
    desc: object, entry: str = "estimator", where: str | Path = "params.json"
) -> BaseEstimator:
    """Rebuild an estimator from :func:`describe`'s output (registered classes only).

    Parameters
    ----------
    desc : dict
        ``{"class": dotted path, "params": {...}}``.
    entry : str
        Where ``desc`` sits in ``params.json``, for error messages.
    where : str or Path, default="params.json"
        The file ``desc`` was read from, for error messages.

    Returns
    -------
    BaseEstimator
        Unfitted. A component saved as frozen is built unwrapped; the caller
        wraps it once its fitted state is restored.

    Raises
    ------
    ValueError
        When the entry names a class outside the registry (a function, a
        module that does not exist, any other class) or is malformed.
    """
    if not isinstance(desc, dict) or not isinstance(desc.get("params"), dict):
        raise ValueError(f"{where} entry {entry!r} is not a component description")
    path = desc.get("class")
    cls = component_classes().get(path) if isinstance(path, str) else None
    if cls is None:
        raise ValueError(
            f"{where} entry {entry!r} names {path!r}, which is not a conchshell component "
            "class; refusing to load it"
        )
    params = {}
    for key, value in desc["params"].items():
        if isinstance(value, dict) and "__estimator__" in value:
            params[key] = build(value["__estimator__"], f"{entry}.{key}", where)
        elif isinstance(value, dict) and "__tuple__" in value:
            params[key] = tuple(value["__tuple__"])
        else:
            params[key] = value
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(
            f"{where} entry {entry!r} has parameters {cls.__name__} does not take: {exc}"
        ) from exc


def fitted_attrs(comp: BaseEstimator) -> dict[str, Any]:
    """Small fitted attributes (``classes_``, ``history_``...) worth saving."""
    out: dict[str, Any] = {}
    for key, value in vars(_unfrozen(comp)).items():
        if not key.endswith("_") or key.startswith("_") or key in _ATTR_SKIP:
            continue
        try:
            flatten(value, {})
        except TypeError:
            continue  # not plain data (a module, a fitted sklearn object): rebuilt, not saved
        out[key] = value
    return out


def restore_attrs(comp: BaseEstimator, attrs: dict[str, Any]) -> None:
    """Set the attributes :func:`fitted_attrs` saved."""
    for key, value in attrs.items():
        setattr(comp, key, value)


def _saved_sizes(comp: BaseEstimator) -> dict[str, Any]:
    """The sizes a component's ``initialize`` takes, from its restored fitted attributes."""
    names = inspect.signature(comp.initialize).parameters
    return {k: getattr(comp, f"{k}_") for k in names if hasattr(comp, f"{k}_")}


def save_stages(model: Any, path: Path, run: dict[str, Any] | None = None) -> None:
    """Write the fitted image side and codec (a checkpoint of the first stages)."""
    state: dict[str, Any] = {"run": run}
    for name in ("encoder", "extractor", "codec"):
        comp = _unfrozen(getattr(model, f"{name}_"))
        if hasattr(comp, "module_"):
            state[name] = comp.module_.state_dict()
        state[f"{name}_attrs"] = fitted_attrs(comp)
    save_tree(path, state)


def load_stages(
    model: Any, path: Path, check_run: Callable[[object, Path], None] | None = None
) -> None:
    """Restore what :func:`save_stages` wrote into ``model``'s components.

    ``check_run(saved_identity, path)``, when given, vets the file's run first
    (:meth:`conchshell.gan.training.CheckpointFolder.check_run`).
    """
    from conchshell.gan.training import _mismatch

    state = load_tree(path)
    if check_run is not None:
        check_run(state.get("run"), path)
    for name in ("encoder", "extractor", "codec"):
        comp = _unfrozen(getattr(model, f"{name}_"))
        comp.initialize()
        if name in state:
            try:
                comp.module_.load_state_dict(state[name])
            except RuntimeError as exc:
                raise _mismatch(path, exc) from exc
        restore_attrs(comp, state.get(f"{name}_attrs", {}))


def save_model(model: Any, path: str | Path) -> Path:
    """Write a fitted model to a folder (see the module's description).

    Parameters
    ----------
    model : ImageToMusic
        Fitted.
    path : str or Path
        The folder; created if missing. Under ``torchrun`` only rank 0 writes.

    Returns
    -------
    Path
        The folder.
    """
    folder = check_path(path, "path")
    if int(os.environ.get("RANK", "0")) != 0:
        return folder
    if folder.name in ("", ".", ".."):
        folder = folder.resolve()  # the swap needs the folder's own name
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"cannot save the model to {folder}: it is a file, not a folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tree: dict[str, Any] = {}
    for name in COMPONENTS:
        comp = getattr(model, f"{name}_")
        if comp is None:
            continue
        if hasattr(_unfrozen(comp), "module_"):
            tree[name] = _unfrozen(comp).module_.state_dict()
        tree[f"{name}_attrs"] = fitted_attrs(comp)
    if model.category_model_ is not None:
        tree["category_model"] = {
            "coef": model.category_model_.coef_,
            "intercept": model.category_model_.intercept_,
            "classes": model.category_model_.classes_,
        }
    meta = {
        "library": "conchshell",
        "version": __version__,
        "estimator": describe(model, fitted=True),
        "categories": model.categories_,
        "level": model.level_,
    }
    recover_interrupted_save(folder)
    staging = _staging(folder)
    staging.mkdir()
    try:
        (staging / _SAVING_MARK).touch()
        save_tree(staging / MODEL_FILE, tree)
        save_history(model.history_, staging / HISTORY_FILE)
        with atomic_write(staging / PARAMS_FILE, "w") as handle:
            json.dump(meta, handle, indent=2)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # the old model is untouched
        raise
    if folder.is_dir():
        _exchange(staging, folder)  # now staging holds the old model
    else:
        staging.rename(folder)
    recover_interrupted_save(folder)  # carries other files over, removes the old model
    return folder


# Present in a staging folder from its creation; found in the model folder, it says
# that the exchange happened and the old model's leftovers still wait to be cleared.
_SAVING_MARK = ".conchshell-saving"


def _check_finite(module: Any, what: str) -> None:
    """Refuse weights that would only show up as NaN music at predict time."""
    for key, tensor in module.state_dict().items():
        if not all_finite(tensor):
            raise ValueError(f"{what} contain NaN or infinite values (in {key!r})")


def _staging(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.saving"


def recover_interrupted_save(folder: str | Path) -> None:
    """Finish, or undo, a :func:`save_model` into ``folder`` that was killed.

    A save writes the new model into a hidden sibling folder and exchanges the
    two folders in one step, so a reader sees the old model or the new one.
    Killed before the exchange, the sibling holds a partial new model: it is
    removed. Killed after it, the sibling holds the old model and the files
    that are not part of a model (a ``checkpoints`` folder...): those move
    into the new model's folder and the rest is removed.

    Parameters
    ----------
    folder : str or Path
        The model folder.
    """
    folder = Path(folder)
    staging = _staging(folder)
    old = folder.parent / f".{folder.name}.old"
    if old.is_dir() and not folder.exists():
        old.rename(folder)  # killed between the two renames of the fallback exchange
    if old.is_dir() and folder.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        old.rename(staging)
    if not staging.is_dir():
        (folder / _SAVING_MARK).unlink(missing_ok=True)
        return
    if (folder / _SAVING_MARK).is_file():
        for entry in staging.iterdir():
            if entry.name not in _MODEL_FILES and not (folder / entry.name).exists():
                entry.rename(folder / entry.name)
    shutil.rmtree(staging, ignore_errors=True)
    (folder / _SAVING_MARK).unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders: atomically where the system can (Linux renameat2)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, rename_exchange = -100, 2
        if libc.renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), rename_exchange) == 0:
            return
    except (AttributeError, OSError):
        pass  # no renameat2 here: fall back on two renames
    old = b.parent / f".{b.name}.old"
    b.rename(old)
    a.rename(b)
    old.rename(a)


def load_model(cls: type, path: str | Path, device: str | None = None) -> Any:
    """Load a folder written by :func:`save_model`. Runs no code from the files.

    Parameters
    ----------
    cls : type
        The estimator class expected (:class:`~conchshell.ImageToMusic`).
    path : str or Path
        The model folder.
    device : str, optional
        Where to put the model; by default the saved ``device`` settings.

    Returns
    -------
    ImageToMusic
        Fitted.

    Raises
    ------
    FileNotFoundError
        When the folder holds no model.
    ValueError
        When its files are damaged, tampered with or do not fit together,
        naming the folder.
    """
    folder = check_path(path, "path")
    try:
        return _load(cls, folder, device)
    except (KeyError, TypeError, AttributeError, RuntimeError, json.JSONDecodeError) as exc:
        # A hand-edited or mismatched folder: name it rather than fail deep in torch.
        detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])
        raise ValueError(
            f"{folder} holds a damaged or incompatible conchshell model "
            f"({type(exc).__name__}: {detail})"
        ) from exc


def _read_model_files(folder: Path) -> dict[str, bytes]:
    """The model's files, read through one handle on the folder.

    A save that swaps in a new folder meanwhile cannot make this read a mixture
    of the old model's files and the new one's.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} holds no conchshell model (no such folder)")
    handle = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    files = {}
    try:
        for name in (PARAMS_FILE, MODEL_FILE, HISTORY_FILE):
            try:
                fd = os.open(name, os.O_RDONLY, dir_fd=handle)
            except FileNotFoundError:
                continue
            with os.fdopen(fd, "rb") as stream:
                files[name] = stream.read()
    finally:
        os.close(handle)
    if PARAMS_FILE not in files:
        raise FileNotFoundError(f"{folder} holds no conchshell model (no {PARAMS_FILE})")
    return files


def _load(cls: type, folder: Path, device: str | None) -> Any:
    files = _read_model_files(folder)
    params_file = folder / PARAMS_FILE
    try:
        meta = json.loads(files[PARAMS_FILE].decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{params_file} is not a UTF-8 text file ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{params_file} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("library") != "conchshell":
        raise ValueError(f"{folder} holds no conchshell model: {params_file} is not conchshell's")
    try:
        level = level_index(meta.get("level"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{params_file}: level {meta.get('level')!r} is not valid: {exc}") from exc
    model = build(meta["estimator"], "estimator", params_file)
    if not isinstance(model, cls):
        raise ValueError(f"{params_file} describes a {type(model).__name__}, not a {cls.__name__}")
    if device is not None:
        model.set_params(device=device)
    if MODEL_FILE not in files:
        raise FileNotFoundError(f"{folder} holds no weights ({MODEL_FILE} is missing)")
    tree = parse_tree(files[MODEL_FILE], folder / MODEL_FILE)
    fitted = meta["estimator"]["fitted"]
    for name in COMPONENTS:
        spec = fitted.get(name)
        comp = build(spec, f"fitted.{name}", params_file) if spec is not None else None
        if comp is not None and "device" in comp.get_params(deep=False) and device is not None:
            comp.set_params(device=device)
        if comp is not None:
            restore_attrs(comp, tree.get(f"{name}_attrs", {}))
        if comp is not None and name in tree:
            comp.initialize(**_saved_sizes(comp))
            comp.module_.load_state_dict(tree[name])
            comp.module_.eval()
            _check_finite(comp.module_, f"{folder / MODEL_FILE}: the {name}'s weights")
        setattr(model, f"{name}_", comp)
    cm = tree.get("category_model")
    if cm is not None:
        lr = LogisticRegression()
        lr.coef_, lr.intercept_, lr.classes_ = cm["coef"], cm["intercept"], cm["classes"]
        model.category_model_ = lr
    else:
        model.category_model_ = None
    for name, value in meta["estimator"]["params"].items():
        # A component the user froze stays frozen, wrapping its loaded fitted self.
        if isinstance(value, dict) and value.get("__estimator__", {}).get("frozen"):
            model.set_params(**{name: FrozenEstimator(getattr(model, f"{name}_"))})
    model.categories_ = list(meta["categories"])
    model.level_ = level
    history = files.get(HISTORY_FILE)
    model.history_ = json.loads(history.decode("utf-8")) if history is not None else []
    return model


class SaveLoadMixin:
    """``save`` and ``load`` for :class:`~conchshell.ImageToMusic`."""

    def save(self, path: str | Path) -> Path:
        """Save the fitted model to a folder: safetensors weights + JSON parameters.

        See :mod:`conchshell.persistence` for the folder's layout. A failed
        save (an unwritable folder, a full disk) raises ``OSError`` naming the
        file and leaves no partial model.

        Parameters
        ----------
        path : str or Path
            The folder to write (created if missing). Under ``torchrun`` only rank 0
            writes.

        Returns
        -------
        Path
            The folder.
        """
        self._check_fitted()
        return save_model(self, path)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> Any:
        """Load a model written by :meth:`save`. Runs no code from the files.

        Parameters
        ----------
        path : str or Path
            The folder :meth:`save` wrote.
        device : str, optional
            Where to put the model (e.g. ``"cpu"``, ``"cuda"``); by default the
            components' saved ``device`` setting.

        Returns
        -------
        ImageToMusic
            The fitted estimator.

        Raises
        ------
        FileNotFoundError
            When the folder holds no model.
        ValueError
            When its files are damaged, tampered with or do not fit together
            (e.g. weights of another size), naming the folder.
        """
        return load_model(cls, path, device)
