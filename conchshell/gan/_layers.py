"""Small building blocks shared by the generator and the discriminator."""

from __future__ import annotations

from typing import Any

import torch
from sklearn.exceptions import NotFittedError
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from conchshell.base import TorchComponent, seeded

__all__ = [
    "StateDictPickleMixin",
    "fit_feature_scaling",
    "he_init_",
    "normal_init_",
    "resolve_init_std",
    "set_implied_sizes",
    "wn_conv1d",
]

# The authors' (MelGAN-style) initialisation for convolution weights.
CONV_INIT_STD = 0.02


def wn_conv1d(*args: Any, **kwargs: Any) -> nn.Conv1d:
    """A weight-normalised :class:`torch.nn.Conv1d` (the parametrisation API).

    The magnitude ``g`` (``parametrizations.weight.original0``) and the
    direction ``v`` (``original1``) are both parameters.
    """
    return weight_norm(nn.Conv1d(*args, **kwargs))


@torch.no_grad()
def normal_init_(module: nn.Module, std: float | None = CONV_INIT_STD) -> nn.Module:
    """Redraw every convolution weight in ``module`` from N(0, ``std``), in place.

    A weight-normed convolution gets the drawn weight through its
    parametrisation (``v`` = the draw, ``g`` = its per-filter norm), so the
    first forward pass sees exactly the drawn weight. Biases keep torch's
    default, as in the authors' (MelGAN's) initialiser. ``std=None`` leaves
    torch's fan-in scaled default untouched.
    """
    if std is None:
        return module
    for sub in module.modules():
        if isinstance(sub, nn.Conv1d):
            weight = torch.empty_like(sub.weight).normal_(0.0, std)
            if parametrize.is_parametrized(sub, "weight"):
                sub.weight = weight  # right_inverse: sets g and v
            else:
                sub.weight.copy_(weight)
    return module


@torch.no_grad()
def he_init_(
    module: nn.Module, slope: float, last: nn.Module | None = None, gain: float = 1.0
) -> nn.Module:
    """Signal-preserving initialisation, in place: He-normal weights, zero biases.

    Every convolution and Linear layer gets weights from N(0, 2 / ((1 + slope^2) fan_in))
    (``torch.nn.init.kaiming_normal_`` for a LeakyReLU of that slope), so activations
    keep their scale through the stack instead of fading into the biases, which start
    at zero. ``last`` (the output layer) has its weights scaled by ``gain``, so a
    bounded output (``tanh``) starts in its linear range.
    """
    for sub in module.modules():
        if not isinstance(sub, nn.Conv1d | nn.Linear):
            continue
        weight = torch.empty_like(sub.weight)
        nn.init.kaiming_normal_(weight, a=slope, nonlinearity="leaky_relu")
        if sub is last:
            weight.mul_(gain)
        if parametrize.is_parametrized(sub, "weight"):
            sub.weight = weight  # right_inverse: sets g and v
        else:
            sub.weight.copy_(weight)
        if sub.bias is not None:
            sub.bias.zero_()
    return module


def resolve_init_std(
    init_std: object, default: float | None, allowed: tuple[str, ...] = ()
) -> float | str | None:
    """Check an ``init_std`` parameter; ``"auto"`` gives ``default``; ``allowed`` names pass."""
    if isinstance(init_std, str) and init_std == "auto":
        return default
    if isinstance(init_std, str) and init_std in allowed:
        return init_std
    if init_std is None:
        return None
    if isinstance(init_std, bool) or not isinstance(init_std, int | float) or init_std <= 0:
        names = "".join(f", {name!r}" for name in allowed)
        raise ValueError(
            f"init_std must be a positive number, None, 'auto'{names}, got {init_std!r}"
        )
    return float(init_std)


class StateDictPickleMixin(TorchComponent):
    """Pickle ``module_`` through its state dict.

    Modules carrying parametrisations (the new weight-norm API) refuse to be
    pickled whole, so the component stores the weights (on the CPU) and
    rebuilds the module from its own parameters when it is loaded.
    """

    def _check_initialized(self) -> None:
        # Not check_is_fitted: it insists on a ``fit`` method, which the
        # discriminator (trained only adversarially) does not have.
        if not hasattr(self, "module_"):
            raise NotFittedError(
                f"This {type(self).__name__} has no module yet: call initialize() or fit() first"
            )

    def __getstate__(self) -> dict[str, Any]:
        # A copy: object.__getstate__ hands back the live __dict__, which must not change.
        state = dict(self.__dict__)
        module = state.pop("module_", None)
        if isinstance(module, nn.Module):
            state["_module_state"] = {
                key: value.detach().cpu() for key, value in module.state_dict().items()
            }
            state["_module_training"] = module.training
        for key, value in list(state.items()):
            if isinstance(value, torch.Tensor):
                state[key] = value.detach().cpu()
            elif isinstance(value, torch.device):
                state[key] = str(value)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights = state.pop("_module_state", None)
        training = state.pop("_module_training", False)
        super().__setstate__(state)
        if weights is not None:
            # Seeded fork: rebuilding must not move the caller's random stream.
            with seeded(getattr(self, "seed_", 0)):
                module = self._build_module()
            module.load_state_dict(weights)
            module.train(training)
            device = getattr(self, "device_", torch.device("cpu"))
            self.module_ = module.to(device)


def set_implied_sizes(
    component: Any, implied: dict[str, int | None], paper: dict[str, int], what: str
) -> None:
    """Set ``component.<name>_`` for each size: the parameter, else the implied, else the paper's.

    Parameters
    ----------
    component : estimator
        Has a parameter of each name in ``implied`` (``None`` when unset).
    implied : dict of str to int or None
        Sizes the data or the other components imply.
    paper : dict of str to int
        The paper's sizes, used where neither is given.
    what : str
        The component's name in the error message.

    Raises
    ------
    ValueError
        When a set parameter contradicts an implied size, or a size is not a positive int.
    """
    from conchshell._validation import check_positive_int

    for name, given in implied.items():
        param = getattr(component, name)
        if param is not None and given is not None and param != given:
            raise ValueError(
                f"{what} {name}={param} contradicts the other components, which "
                f"give {given}; leave it unset (None) or make them agree"
            )
        value = param if param is not None else given if given is not None else paper[name]
        setattr(component, f"{name}_", check_positive_int(value, name))


@torch.no_grad()
def fit_feature_scaling(mean: torch.Tensor, scale: torch.Tensor, x: torch.Tensor) -> None:
    """Write ``x``'s per-column mean and standard deviation into the buffers ``mean`` and ``scale``.

    A single row, or a constant column, keeps scale 1 rather than blowing up.

    Parameters
    ----------
    mean, scale : torch.Tensor of shape (n_features,)
        Buffers, written in place.
    x : torch.Tensor of shape (n_samples, n_features)
    """
    mean.copy_(x.mean(0))
    spread = x.std(0) if x.shape[0] > 1 else torch.ones(x.shape[1])
    scale.copy_(torch.where(spread > 1e-8, spread, torch.ones_like(spread)))
