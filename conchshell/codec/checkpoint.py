"""Reading VQ-VAE weight files without running foreign code.

Two formats are understood:

- the released Jukebox ``vqvae.pth.tar``: a torch pickle holding a dict whose
  ``"model"`` entry is the state dict, its keys possibly prefixed ``module.``
  (it was saved from a data-parallel wrapper). It is read with
  ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
  containers, so a file carrying a malicious pickle is refused before any of
  its code runs;
- this library's own ``.safetensors`` files written by
  :meth:`conchshell.codec.jukebox.JukeboxCodec.save` (no pickle at all).

Loading is strict: a file that does not fit the module exactly is an error
that lists the missing keys, the unexpected keys and the mismatched shapes.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["check_state_dict", "load_jukebox_checkpoint", "load_state_dict_strict"]

_PREFIX = "module."
_MAX_LISTED = 12


def load_jukebox_checkpoint(path: str | os.PathLike) -> OrderedDict[str, torch.Tensor]:
    """Read an official Jukebox VQ-VAE checkpoint into a plain state dict.

    Parameters
    ----------
    path : str or path-like
        A ``vqvae.pth.tar`` style file: a dict whose ``"model"`` entry maps
        parameter names to tensors. A bare state dict (a mapping of names to
        tensors) is accepted too. A leading ``module.`` on the keys is removed.

    Returns
    -------
    collections.OrderedDict of str to torch.Tensor
        The tensors on the CPU, keyed as in the Jukebox layout
        (``encoders.0.level_blocks.0.model.0.0.weight`` ...).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a torch checkpoint, is truncated or corrupt,
        would need arbitrary code to unpickle, or does not hold a state dict.

    Examples
    --------
    >>> import torch, tempfile, os
    >>> tmp = os.path.join(tempfile.mkdtemp(), "vqvae.pth.tar")
    >>> torch.save({"model": {"module.bottleneck.level_blocks.0.k": torch.zeros(4, 2)}}, tmp)
    >>> list(load_jukebox_checkpoint(tmp))
    ['bottleneck.level_blocks.0.k']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Jukebox checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain containers.
        raise ValueError(
            f"{str(path)!r} is not a plain weights file: it needs code to unpickle, which is "
            f"refused for safety ({_first_line(exc)})"
        ) from exc
    except Exception as exc:  # torch raises many types on damaged files; name the file instead
        raise ValueError(
            f"{str(path)!r} could not be read as a torch checkpoint (corrupt or truncated?): "
            f"{_first_line(exc)}"
        ) from exc
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{str(path)!r} holds a {type(obj).__name__}, not a dict; expected the Jukebox "
            "layout {'model': state_dict, ...}"
        )
    state = obj["model"] if "model" in obj else obj
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{str(path)!r}: its 'model' entry is a {type(state).__name__}, not a state dict"
        )
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(
                f"{str(path)!r}: the state dict must map names to tensors, found "
                f"{key!r} -> {type(value).__name__}"
            )
        out[key.removeprefix(_PREFIX)] = value
    if not out:
        raise ValueError(f"{str(path)!r} holds an empty state dict")
    return out


def check_state_dict(
    module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise a ValueError unless ``state`` fits ``module``'s state dict exactly.

    Parameters
    ----------
    module : torch.nn.Module
        The module the tensors are meant for.
    state : mapping of str to torch.Tensor
        The tensors to load.
    source : str
        How to name the origin (a file path) in the error message.

    Raises
    ------
    ValueError
        Listing missing keys, unexpected keys and keys whose shapes differ.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = [f"{source!r} does not fit this model:"]
    for title, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("mismatched shapes", shapes),
    ):
        if items:
            shown = ", ".join(items[:_MAX_LISTED])
            more = f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
            parts.append(f"{len(items)} {title}: {shown}{more}")
    raise ValueError("\n  ".join(parts))


def load_state_dict_strict(
    module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str
) -> None:
    """Copy ``state`` into ``module`` after :func:`check_state_dict` passes.

    Parameters
    ----------
    module : torch.nn.Module
        The module to load into.
    state : mapping of str to torch.Tensor
        Tensors whose names and shapes must match ``module``'s state dict exactly.
    source : str
        How to name the origin (a file path) in the error message.

    Raises
    ------
    ValueError
        When ``state`` does not fit ``module`` (missing, extra or misshapen tensors).
    """
    check_state_dict(module, state, source)
    module.load_state_dict(state, strict=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
