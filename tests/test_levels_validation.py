"""Level names and the shared input checks."""

import numpy as np
import pytest
import torch

from conchshell._validation import all_finite, check_categories, check_tensor, finite_flag
from conchshell.levels import level_index, level_name


@pytest.mark.parametrize(("level", "index"), [("deep", 0), ("LOW", 1), ("high", 2), (2, 2)])
def test_level_index(level, index):
    assert level_index(level) == index


@pytest.mark.parametrize("bad", ["middle", 3, -1, True, None])
def test_level_index_rejects(bad):
    with pytest.raises(ValueError, match="level must be one of"):
        level_index(bad)


def test_level_name():
    assert [level_name(i) for i in (0, 1, 2)] == ["deep", "low", "high"]


def test_check_tensor_accepts_arrays_and_converts():
    out = check_tensor(np.zeros((2, 3), dtype=np.uint8), name="x", ndim=2)
    assert out.dtype == torch.float32
    assert out.shape == (2, 3)


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        (torch.zeros(2, 3), {"ndim": 3}, "x must have 3 dimensions, got shape \\(2, 3\\)"),
        (torch.zeros(2, 4), {"ndim": 2, "shape": (None, 3)}, "dimension 1 is 4, expected 3"),
        (torch.zeros(0, 3), {"ndim": 2}, "empty batch"),
        (torch.tensor([[float("nan")]]), {"ndim": 2}, "NaN"),
        (np.array([["a"]]), {"ndim": 2}, "numeric"),
    ],
)
def test_check_tensor_errors(value, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        check_tensor(value, name="x", **kwargs)


def test_check_categories():
    assert check_categories([0, 5, 2.0], n_samples=3, n_categories=6).tolist() == [0, 5, 2]
    with pytest.raises(ValueError, match=r"must lie in \[0, 6\), got \[6\]"):
        check_categories([0, 6], n_samples=2, n_categories=6)
    with pytest.raises(ValueError, match="has 1 entries for 2 samples"):
        check_categories([0], n_samples=2, n_categories=6)
    with pytest.raises(TypeError, match="integer category ids"):
        check_categories([0.5], n_samples=1, n_categories=6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", [0, 37, -1])
def test_all_finite_agrees_with_isfinite(dtype, bad, where):
    t = torch.randn(2, 3, 5, 7).to(dtype)
    if bad is not None:
        t.view(-1)[where] = bad
    assert all_finite(t) == bool(torch.isfinite(t).all()) == (bad is None)
    flag = finite_flag(t)
    assert flag.dtype == torch.bool and flag.shape == () and bool(flag) == (bad is None)


def test_all_finite_on_large_values_empty_and_integer_tensors():
    assert all_finite(torch.full((4,), torch.finfo(torch.float32).max))  # no overflowing sum
    assert all_finite(torch.empty(0, 3))
    assert all_finite(torch.arange(5))
    assert not all_finite(torch.tensor([1.0, float("nan")], requires_grad=True))
