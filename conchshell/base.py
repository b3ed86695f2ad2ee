"""Shared machinery for the torch-backed components of conchshell.

Every component (encoders, forger, extractor, codec, generator, discriminator)
is a scikit-learn estimator: ``__init__`` stores its arguments unchanged,
``initialize()`` builds the torch module into ``module_`` without training,
``fit`` returns ``self`` and fitted state ends with an underscore. The helpers
here give all of them the same device handling, seeding and CPU-mapped
pickling, so each component only says how to build its module.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "SIZES",
    "TorchComponent",
    "check_size",
    "load_state_dict_strictly",
    "resolve_device",
    "seed_from_random_state",
    "seeded",
]

_DEVICES = ("auto", "cpu", "cuda")

#: The sizes every sized component (``Generator(size=...)``, ``JukeboxCodec.sized(...)``,
#: ``MultiScaleDiscriminator.sized(...)``) and every preset (``presets.conchshell(size)``)
#: accepts: the paper's, one that trains on two CPU cores in minutes, one for tests.
SIZES = ("paper", "small", "tiny")


def check_size(size: object) -> str:
    """Return ``size`` if it is one of :data:`SIZES`, else raise a ValueError naming it.

    Parameters
    ----------
    size : {"paper", "small", "tiny"}

    Returns
    -------
    str

    Examples
    --------
    >>> check_size("small")
    'small'
    """
    if not isinstance(size, str) or size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    return size


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn a user's device setting into a concrete :class:`torch.device`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"} or torch.device or None
        ``"auto"`` (or ``None``) picks CUDA when it is available and the CPU
        otherwise. ``"cuda"`` without a visible GPU is an error rather than a
        silent fall-back, so a user who asked for a GPU learns they do not
        have one. ``"cuda:1"`` style strings are accepted.

    Returns
    -------
    torch.device

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str) and device.split(":")[0] in _DEVICES[1:]:
        dev = torch.device(device)
    else:
        raise ValueError(f"device must be one of {_DEVICES} (or 'cuda:N'), got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available here")
    return dev


def seed_from_random_state(random_state: int | np.random.RandomState | None) -> int:
    """Draw a 31-bit torch seed from a scikit-learn style ``random_state``.

    ``None`` gives a fresh random seed; an int always gives the same seed.

    Parameters
    ----------
    random_state : int, numpy.random.RandomState or None

    Returns
    -------
    int
        In ``[0, 2**31 - 1)``.
    """
    if isinstance(random_state, bool | float):
        raise ValueError(
            f"random_state must be None, an int or a RandomState, got {random_state!r}"
        )
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, restoring it afterwards.

    Building a module inside this block makes its initial weights a function
    of ``seed`` alone, without disturbing the caller's random stream.

    Parameters
    ----------
    seed : int
        Seed of torch's global generator inside the block.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def load_state_dict_strictly(
    module: torch.nn.Module, state_dict: Mapping[str, Any], *, source: str
) -> None:
    """Load ``state_dict`` into ``module`` strictly, with a readable error.

    Parameters
    ----------
    module : torch.nn.Module
        Receives the weights.
    state_dict : mapping of str to torch.Tensor
        The weights.
    source : str
        Where they came from (a file name), for the error message.

    Raises
    ------
    ValueError
        Listing the missing keys, the unexpected keys and the keys whose
        shapes differ, when the state dict does not fit the module exactly.
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{source} does not hold a state dict, got {type(state_dict).__name__}")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(
        f"{key}: file {_shape_or_type(value)} vs model {tuple(expected[key].shape)}"
        for key, value in state_dict.items()
        if key in expected
        and (not isinstance(value, torch.Tensor) or value.shape != expected[key].shape)
    )
    if missing or unexpected or wrong:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

        parts = [f"{source} does not match the model:"]
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if wrong:
            parts.append(f"shape mismatches: {show(wrong)}")
        raise ValueError("\n  ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def _shape_or_type(value: object) -> object:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


class TorchComponent(BaseEstimator):
    """Base class for components that own a :class:`torch.nn.Module`.

    Subclasses define ``__init__`` (which must only store its arguments,
    including ``device`` and ``random_state``) and :meth:`_build_module`.

    Attributes
    ----------
    module_ : torch.nn.Module
        The built module, on ``device_``. Present after :meth:`initialize`.
    device_ : torch.device
        The device the module lives on.
    """

    def _build_module(self) -> torch.nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def initialize(self) -> TorchComponent:
        """Build the torch module with fresh, seeded weights; do not train.

        Returns
        -------
        self
            The component, with ``module_`` and ``device_`` set, so shapes and
            parameter counts can be inspected before any training.
        """
        self.device_ = resolve_device(getattr(self, "device", "auto"))
        self.seed_ = seed_from_random_state(getattr(self, "random_state", None))
        with seeded(self.seed_):
            module = self._build_module()
        self.module_ = module.to(self.device_)
        return self

    def _ensure_initialized(self) -> None:
        if not hasattr(self, "module_"):
            self.initialize()

    def _check_initialized(self) -> None:
        check_is_fitted(self, "module_")

    def n_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters of ``module_`` (building it if needed).

        Parameters
        ----------
        trainable_only : bool, default=False
            Count only parameters with ``requires_grad``.

        Returns
        -------
        int
        """
        self._ensure_initialized()
        return sum(
            p.numel() for p in self.module_.parameters() if p.requires_grad or not trainable_only
        )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "module_")

    # Pickles must load on a machine without a GPU: store modules on the CPU.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: never touch the live object
        for key, value in list(state.items()):
            if isinstance(value, torch.nn.Module) and _module_device(value).type != "cpu":
                state[key] = copy.deepcopy(value).cpu()
            elif isinstance(value, torch.Tensor) and value.device.type != "cpu":
                state[key] = value.detach().cpu()
            elif isinstance(value, torch.device):
                state[key] = str(value)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "device_" in self.__dict__:
            # Re-resolve: a model pickled on a GPU machine lands on the CPU here.
            wanted = getattr(self, "device", "auto")
            try:
                self.device_ = resolve_device(wanted)
            except ValueError:
                self.device_ = torch.device("cpu")
            for _key, value in self.__dict__.items():
                if isinstance(value, torch.nn.Module):
                    value.to(self.device_)


def _module_device(module: torch.nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")
