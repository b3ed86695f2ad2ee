"""Safe, atomic persistence of nested training state.

Models and checkpoints are written as safetensors files: tensors in the body,
everything else (optimiser hyper-parameters, step counters, history, RNG
states) as JSON in the header's metadata. Loading them executes no code, unlike
a pickle. Every write goes to a temporary file in the target folder that is
flushed, fsynced and renamed over the destination, so a crash never leaves a
half-written file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

__all__ = ["atomic_write", "load_tree", "parse_tree", "save_tree"]

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_NDARRAY = "__ndarray__"
_META_KEY = "conchshell_tree"
_SUM_KEY = "conchshell_sha256"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    The data is flushed and fsynced before the rename, and the folder is
    fsynced after it, so the file is either the old one or the complete new
    one, even after a power cut. On any error the temporary file is removed.

    Parameters
    ----------
    path : str or os.PathLike
        The destination; its folder must exist.
    mode : str, default "wb"
        The mode to open the temporary file in (``"w"`` for text).

    Yields
    ------
    file object
        The open temporary file.

    Raises
    ------
    PermissionError, OSError
        With the destination named, when the folder cannot be written.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write in {folder}: {exc.strerror}") from exc
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # e.g. a full disk: say which file could not be written.
            raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, np.ndarray):
        key = str(len(tensors))
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj))
        return {_NDARRAY: key}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str | int):
                raise TypeError(f"cannot save a dict key of type {type(k).__name__}: {k!r}")
        # JSON keys are strings: remember which were ints (optimiser state uses them).
        return {
            "__dict__": [[k, _flatten(v, tensors)] for k, v in obj.items()],
        }
    if isinstance(obj, tuple):
        return {_TUPLE: [_flatten(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot save a value of type {type(obj).__name__}")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if _NDARRAY in obj:
            return tensors[obj[_NDARRAY]].numpy()
        if _TUPLE in obj:
            return tuple(_unflatten(v, tensors) for v in obj[_TUPLE])
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
        raise ValueError(f"unknown entry in saved tree: {sorted(obj)}")
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def _checksum(skeleton: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a tree's JSON skeleton and its tensors' bytes, in key order."""
    digest = hashlib.sha256(skeleton.encode())
    for key in sorted(tensors):
        tensor = tensors[key].contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_tree(path: str | os.PathLike[str], tree: Any) -> None:
    """Save a nested structure of tensors, arrays and JSON values atomically.

    Parameters
    ----------
    path : path-like
        Destination file (conventionally ``*.safetensors``).
    tree : object
        Nested dicts (str or int keys), lists, tuples, tensors, numpy arrays,
        numbers, strings, booleans and None.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.safetensors")
    >>> save_tree(p, {"step": 3, "w": torch.ones(2)})
    >>> load_tree(p)["step"]
    3
    """
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(tree, tensors)
    # safetensors refuses shared storage: give every tensor its own copy.
    tensors = {k: v.clone() for k, v in tensors.items()}
    text = json.dumps(skeleton)
    payload = st_save(tensors, metadata={_META_KEY: text, _SUM_KEY: _checksum(text, tensors)})
    with atomic_write(path) as handle:
        handle.write(payload)


def load_tree(path: str | os.PathLike[str]) -> Any:
    """Load what :func:`save_tree` wrote. Runs no code from the file.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save_tree`.

    Returns
    -------
    object
        The nested dicts, lists, tensors and plain values that were saved.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a conchshell safetensors tree (corrupt, truncated
        or foreign) or its contents do not match the SHA-256 checksum written
        with them, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return parse_tree(path.read_bytes(), path)


def parse_tree(data: bytes, path: str | os.PathLike[str]) -> Any:
    """:func:`load_tree` of a file's bytes already read; ``path`` names it in errors.

    Parameters
    ----------
    data : bytes
        The file's contents.
    path : str or os.PathLike
        The file they were read from.

    Returns
    -------
    object
        The saved tree.

    Raises
    ------
    ValueError
        As :func:`load_tree`.
    """
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        text = header["__metadata__"][_META_KEY]
        skeleton = json.loads(text)
    except (SafetensorError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable conchshell file ({exc})") from exc
    expected = header["__metadata__"].get(_SUM_KEY)
    # Files written before checksums existed have none; every newer one is verified.
    if expected is not None and expected != _checksum(text, tensors):
        raise ValueError(
            f"{path} is damaged: its contents do not match the checksum it was saved with"
        )
    try:
        return _unflatten(skeleton, tensors)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        # A skeleton pointing at missing tensors or carrying unknown entries.
        raise ValueError(f"{path} is not a readable conchshell file ({exc!r})") from exc
