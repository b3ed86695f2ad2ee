"""Inference fast path: a fitted :class:`~conchshell.estimator.ImageToMusic` made faster to run.

:func:`optimize` prepares a model for generation only:

- every module goes to eval mode with gradients off (``predict`` already runs
  under ``torch.inference_mode``);
- weight normalisation is folded into plain weights
  (``remove_parametrizations(..., leave_parametrized=True)``), so the
  ``g * v / ||v||`` product is no longer recomputed on every call;
- the I3D extractor's batch norms are folded into the preceding convolutions
  (``torch.fx`` conv-bn fusion, exact in eval mode) and its weights stored
  channels-last, the layout oneDNN's 3-D convolutions prefer;
- I3D's stem convolves each run of repeated forged frames once, with its
  temporal kernel slices summed (:mod:`conchshell.video.stem`; exact maths,
  42 % of that layer's multiply-adds on the paper's forged video);
- I3D's temporal max pool (windows that tile the input) is an element-wise
  maximum of strided views (:class:`TiledMaxPool`; exact, and far faster than
  torch's channels-last 3-D pool kernel);
- activations and residual additions whose input nobody else reads work in
  place (:func:`inplace_activations`), which saves memory passes;
- with ``precision="bfloat16"`` the three heavy networks (I3D, generator and
  the codec's decoder) hold bfloat16 weights and compute in bfloat16. This is
  faster on CPUs with native bf16 than ``ImageToMusic(precision="bfloat16")``,
  whose autocast recasts every weight on every call and leaves the layout as it
  is. The codebook lookup stays in float32, so a latent snaps to the same
  code unless it lies within bf16 rounding of a tie;
- in bfloat16, every 2-D and 3-D convolution keeps its weight in oneDNN's
  blocked layout (:class:`PrepackedConv`) instead of having it reordered on
  every call (bit-identical output), and in I3D the ReLU and residual
  addition after a convolution run inside it (:func:`fuse_convolutions`);
- optionally ``torch.compile`` (off by default: on two CPU cores the first
  call compiled for 223 s, and later calls were 10-20 % faster, about the
  noise of a shared machine; see ``docs/performance.md``).

The result is meant for :meth:`~ImageToMusic.predict` and
:meth:`~ImageToMusic.generate_files`: its state-dict keys differ from the
original's, so keep (and :meth:`~ImageToMusic.save`) the original model.

Examples
--------
>>> from conchshell import presets
>>> from conchshell.inference import optimize
>>> model = presets.conchshell("paper").initialize()  # doctest: +SKIP
>>> fast = optimize(model, precision="bfloat16", threads=2)  # doctest: +SKIP
>>> fast.predict(images).shape  # doctest: +SKIP
(1, 128000)
"""

from __future__ import annotations

import copy as _copy
import itertools
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn.utils import parametrize

from conchshell._validation import check_positive_int
from conchshell.video.stem import distinct_frame_stem

__all__ = [
    "PRECISIONS",
    "CastModule",
    "Conv1dAs2d",
    "FusedConv",
    "PrepackedConv",
    "SlidingMaxPool1d",
    "TiledMaxPool",
    "convs_as_2d",
    "fold_batch_norm",
    "fold_weight_norm",
    "fuse_convolutions",
    "inplace_activations",
    "optimize",
    "prepack_convs",
    "set_threads",
    "slide_max_pools",
    "tile_max_pools",
]

PRECISIONS = ("float32", "bfloat16")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class CastModule(nn.Module):
    """Run ``module`` in ``dtype`` and hand back float32.

    Floating-point tensor arguments are cast to ``dtype`` (and to
    ``memory_format`` when given); integer arguments such as category ids
    pass unchanged. Floating-point outputs come back as float32, so the code
    around the module (the codebook lookup, numpy conversion) is unchanged.

    Parameters
    ----------
    module : torch.nn.Module
        Its parameters should already be in ``dtype``.
    dtype : torch.dtype
    memory_format : torch.memory_format, optional
        For example ``torch.channels_last_3d`` for a video network.
    """

    def __init__(
        self,
        module: nn.Module,
        dtype: torch.dtype,
        memory_format: torch.memory_format | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.dtype = dtype
        self.memory_format = memory_format

    def _cast(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            # Dtype and layout in one copy (a float32 layout copy first doubled the bytes).
            if self.memory_format is not None and x.ndim in (4, 5):
                return x.to(dtype=self.dtype, memory_format=self.memory_format)
            return x.to(self.dtype)
        return x

    def forward(self, *args: Any) -> Any:
        """Call the wrapped module on cast arguments.

        Parameters
        ----------
        *args : object
            The wrapped module's inputs; floating tensors are cast to its dtype.

        Returns
        -------
        object
            The module's output, a floating tensor converted back to float32.
        """
        out = self.module(*(self._cast(a) for a in args))
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            return out.float()
        return out


def fold_weight_norm(module: nn.Module) -> int:
    """Replace every parametrised weight (weight norm) by its current value, in place.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    int
        How many parametrisations were removed.

    Examples
    --------
    >>> from torch.nn.utils.parametrizations import weight_norm
    >>> conv = weight_norm(torch.nn.Conv1d(2, 3, 3))
    >>> fold_weight_norm(conv)
    1
    >>> type(conv).__name__, sorted(n for n, _ in conv.named_parameters())
    ('Conv1d', ['bias', 'weight'])
    """
    count = 0
    for sub in list(module.modules()):
        if not parametrize.is_parametrized(sub):
            continue
        for name in list(sub.parametrizations.keys()):
            # leave_parametrized=True keeps the computed weight g * v / ||v||.
            parametrize.remove_parametrizations(sub, name, leave_parametrized=True)
            count += 1
    # Old-style hooks (torch.nn.utils.weight_norm) would leave weight_g/weight_v behind.
    for sub in module.modules():
        for hook in list(sub._forward_pre_hooks.values()):
            if type(hook).__name__ == "WeightNorm":
                torch.nn.utils.remove_weight_norm(sub, hook.name)
                count += 1
    return count


def fold_batch_norm(module: nn.Module, *, inplace: bool = False) -> tuple[nn.Module, int]:
    """Fold every eval-mode batch norm that follows a convolution into it.

    Uses ``torch.fx`` to find convolution -> batch-norm pairs in the traced
    graph, so it is exact whatever the modules are called. A pair is folded
    when the convolution's output goes to the batch norm alone and the norm
    uses running statistics.

    Parameters
    ----------
    module : torch.nn.Module
        A module ``torch.fx`` can trace; put in eval mode.
    inplace : bool, default=False
        Fold into ``module``'s own convolutions instead of a copy's. Saves a
        copy of the weights (160 MB of peak memory for the paper-scale I3D),
        but ``module`` itself then applies both the folded weights and the
        norms: use only the returned module afterwards.

    Returns
    -------
    folded : torch.nn.Module
        A ``torch.fx.GraphModule`` computing the same function (up to float
        rounding), or ``module`` itself when it holds no batch norm.
    count : int
        How many batch norms were folded.
    """
    from torch.fx import symbolic_trace
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    if not any(isinstance(m, norms) for m in module.modules()):
        return module, 0
    module.eval()
    # torch.fx.experimental.optimization.fuse does the same, but always on a deep copy
    # and with a second copy of each convolution; here each weight is replaced once.
    traced = symbolic_trace(module if inplace else _copy.deepcopy(module))
    modules = dict(traced.named_modules())
    count = 0
    for node in list(traced.graph.nodes):
        source = node.args[0] if node.op == "call_module" and node.args else None
        if not (
            isinstance(modules.get(node.target), norms)
            and isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and isinstance(modules.get(source.target), nn.Conv1d | nn.Conv2d | nn.Conv3d)
            and len(source.users) == 1
            and modules[node.target].track_running_stats
        ):
            continue
        conv, norm = modules[source.target], modules[node.target]
        with torch.no_grad():
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight,
                conv.bias,
                norm.running_mean,
                norm.running_var,
                norm.eps,
                norm.weight,
                norm.bias,
            )
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
        count += 1
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced, count


_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU)
# Layers whose output is a new tensor nobody else reads, so the activation after
# them may overwrite it.
_FRESH_OUTPUT = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.ReflectionPad1d,
)


def inplace_activations(module: nn.Module) -> int:
    """Let activations and residual additions overwrite tensors no one else reads.

    For inference only: each skipped allocation saves a pass over memory, and
    these element-wise layers are memory-bound (about 10 % of the paper-scale
    I3D's time). Two cases are safe and changed:

    - in a ``torch.fx.GraphModule``, a ReLU or LeakyReLU module, or an
      addition, whose input (for an addition: one of the two) is produced by
      a node with no other user;
    - in an ``nn.Sequential``, a ReLU or LeakyReLU right after a convolution,
      pooling or padding layer (their output is read by the next layer only).

    Parameters
    ----------
    module : torch.nn.Module
        Changed in place; the function it computes is unchanged.

    Returns
    -------
    int
        How many activations and additions now work in place.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.ReLU())
    >>> inplace_activations(net), net[1].inplace
    (1, True)
    """
    import operator

    count = 0
    for sub in module.modules():
        if isinstance(sub, torch.fx.GraphModule):
            count += _inplace_graph(sub, operator)
        if isinstance(sub, nn.Sequential):
            for before, layer in zip(sub, list(sub)[1:], strict=False):
                fresh = isinstance(before, (*_FRESH_OUTPUT, Conv1dAs2d, SlidingMaxPool1d))
                if fresh and isinstance(layer, _ACTIVATIONS) and not layer.inplace:
                    layer.inplace = True
                    count += 1
    return count


def _inplace_graph(graph_module: torch.fx.GraphModule, operator: Any) -> int:
    def private(arg: object) -> bool:
        return isinstance(arg, torch.fx.Node) and arg.op != "placeholder" and len(arg.users) == 1

    modules = dict(graph_module.named_modules())
    # A module called from several nodes goes in place only if every call allows it.
    allowed: dict[str, bool] = {}
    count = 0
    for node in graph_module.graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(node.target), _ACTIVATIONS):
            ok = bool(node.args) and private(node.args[0])
            allowed[node.target] = allowed.get(node.target, True) and ok
        elif node.op == "call_function" and node.target in (operator.add, torch.add):
            if len(node.args) != 2 or node.kwargs:
                continue
            first, second = node.args
            if private(second) and not private(first):
                first, second = second, first
            if private(first) and isinstance(second, torch.fx.Node):
                node.args = (first, second)
                node.target = operator.iadd
                count += 1
    for target, ok in allowed.items():
        if ok and not modules[target].inplace:
            modules[target].inplace = True
            count += 1
    graph_module.recompile()
    return count


def _replace_children(
    module: nn.Module,
    wanted: Callable[[nn.Module], bool],
    wrap: Callable[[nn.Module], nn.Module],
    skip: tuple[type, ...] = (),
) -> int:
    """Replace each child ``wanted`` accepts by ``wrap(child)``, except inside ``skip`` types."""
    count = 0
    for parent in list(module.modules()):
        if skip and isinstance(parent, skip):
            continue
        for name, child in list(parent.named_children()):
            if wanted(child):
                setattr(parent, name, wrap(child))
                count += 1
    return count


class Conv1dAs2d(nn.Module):
    """A 1-D (transposed) convolution run as a 2-D one on channels-last data.

    oneDNN's channels-last 2-D kernels are several times faster on the CPU
    than its kernels for the ``(batch, channels, time)`` layout of a
    :class:`torch.nn.Conv1d` (measured in ``docs/performance.md``). The input
    is viewed as ``(batch, channels, 1, time)``; the output keeps the
    channels-last strides, so a chain of these (with element-wise activations
    between them) converts the layout only once.

    Parameters
    ----------
    conv : torch.nn.Conv1d or torch.nn.ConvTranspose1d
        With zero padding (the only mode both layouts share).
    """

    def __init__(self, conv: nn.Conv1d | nn.ConvTranspose1d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(
                f"only zero-padded convolutions with numeric padding are converted, got "
                f"padding={conv.padding!r}, padding_mode={conv.padding_mode!r}"
            )
        transposed = isinstance(conv, nn.ConvTranspose1d)
        cls = nn.ConvTranspose2d if transposed else nn.Conv2d
        extra = {"output_padding": (0, conv.output_padding[0])} if transposed else {}
        # Built on the meta device: no weight is allocated and initialised only to be
        # overwritten, so converting holds one extra copy of a weight, not three.
        conv2d = cls(
            conv.in_channels,
            conv.out_channels,
            (1, conv.kernel_size[0]),
            stride=(1, conv.stride[0]),
            padding=(0, conv.padding[0]),
            dilation=(1, conv.dilation[0]),
            groups=conv.groups,
            bias=conv.bias is not None,
            device="meta",
            dtype=conv.weight.dtype,
            **extra,
        )
        weight = conv.weight.detach().unsqueeze(2)
        conv2d.weight = nn.Parameter(
            weight.contiguous(memory_format=torch.channels_last), requires_grad=False
        )
        if conv.bias is not None:
            conv2d.bias = nn.Parameter(conv.bias.detach(), requires_grad=False)
        self.conv = conv2d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the 1-D convolution as a 2-D one of height 1.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, channels, time)

        Returns
        -------
        torch.Tensor of shape (batch, channels_out, time_out)
        """
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return self.conv(x).squeeze(2)


def convs_as_2d(module: nn.Module) -> int:
    """Replace every zero-padded 1-D (transposed) convolution in ``module`` by :class:`Conv1dAs2d`.

    Parameters
    ----------
    module : torch.nn.Module
        Changed in place. Fold weight norm first (:func:`fold_weight_norm`):
        a parametrised convolution is left as it is.

    Returns
    -------
    int
        How many convolutions were replaced.
    """
    return _replace_children(
        module,
        lambda child: (
            isinstance(child, nn.Conv1d | nn.ConvTranspose1d)
            and child.padding_mode == "zeros"
            and not isinstance(child.padding, str)
            and not parametrize.is_parametrized(child)
        ),
        Conv1dAs2d,
    )


_POOL_DIMS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}


class TiledMaxPool(nn.Module):
    """A max pool whose windows tile the input, as an element-wise maximum of strided views.

    When the kernel equals the stride (no padding, no dilation), each output
    element is the maximum of ``prod(kernel)`` inputs that sit one stride apart,
    so the pool is ``prod(kernel) - 1`` element-wise maxima of strided views of
    the input. torch's CPU max pool kernel for channels-last 3-D data is far slower
    than that on I3D's temporal pool (kernel ``(2, 1, 1)``: 56 ms against 3 ms on
    one thread, bfloat16). The result is exactly the pool's.

    Parameters
    ----------
    pool : torch.nn.MaxPool1d, MaxPool2d or MaxPool3d
        With ``kernel_size == stride``, zero padding, dilation 1, no
        ``ceil_mode`` and no ``return_indices``.
    """

    def __init__(self, pool: nn.MaxPool1d | nn.MaxPool2d | nn.MaxPool3d) -> None:
        super().__init__()
        if not self.supports(pool):
            raise ValueError(
                f"only a max pool whose kernel equals its stride, without padding, "
                f"dilation, ceil_mode or indices, can be tiled, got {pool}"
            )
        self.kernel = self._tuple(pool.kernel_size, _POOL_DIMS[type(pool)])

    @staticmethod
    def _tuple(value: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
        return tuple(value) if isinstance(value, tuple | list) else (value,) * dims

    @classmethod
    def supports(cls, pool: nn.Module) -> bool:
        """Whether ``pool`` is a max pool this module computes exactly.

        Parameters
        ----------
        pool : torch.nn.Module

        Returns
        -------
        bool
        """
        dims = _POOL_DIMS.get(type(pool))
        if dims is None or pool.ceil_mode or pool.return_indices:
            return False
        stride = pool.stride if pool.stride is not None else pool.kernel_size
        return (
            cls._tuple(pool.kernel_size, dims) == cls._tuple(stride, dims)
            and set(cls._tuple(pool.padding, dims)) == {0}
            and set(cls._tuple(pool.dilation, dims)) == {1}
        )

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pool of ``x``.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, channels, *spatial)`` (or without the batch axis).

        Returns
        -------
        torch.Tensor
        """
        lead = x.dim() - len(self.kernel)
        sizes = [n // k for n, k in zip(x.shape[lead:], self.kernel, strict=True)]
        out = None
        for offsets in itertools.product(*(range(k) for k in self.kernel)):
            view = x[
                (Ellipsis, *(
                    slice(o, o + n * k, k)
                    for o, n, k in zip(offsets, sizes, self.kernel, strict=True)
                ))
            ]  # fmt: skip
            out = view if out is None else torch.maximum(out, view)
        # A 1x1 window leaves a view of x: copy it, as the pool would, for in-place readers.
        return out.clone() if math.prod(self.kernel) == 1 else out


class SlidingMaxPool1d(nn.Module):
    """A 1-D max pool with overlapping windows as a few element-wise maxima.

    The maximum over a window of ``k`` is the maximum of two overlapping
    windows of ``P``, the largest power of two up to ``k``, and a window of
    ``P`` is built by doubling: ``log2(P)`` passes of :func:`torch.maximum`
    over shifted views, then one more at the strided output positions. The
    generators' pools (kernel 10, stride 1 or 2, padding 1) took 15 ms in
    torch's kernel and 2.8 ms this way on two cores (bfloat16, channels-last
    views, paper-scale Deep). The result is exactly the pool's (the maximum
    does not depend on grouping; NaN propagates in both), and a channels-last
    input gives a channels-last output.

    Parameters
    ----------
    pool : torch.nn.MaxPool1d
        With dilation 1, no ``ceil_mode`` and no ``return_indices``.
    """

    def __init__(self, pool: nn.MaxPool1d) -> None:
        super().__init__()
        if not self.supports(pool):
            raise ValueError(
                f"only a MaxPool1d without dilation, ceil_mode or indices can slide, got {pool}"
            )
        (self.kernel,) = TiledMaxPool._tuple(pool.kernel_size, 1)
        (self.stride,) = TiledMaxPool._tuple(pool.stride or pool.kernel_size, 1)
        (self.padding,) = TiledMaxPool._tuple(pool.padding, 1)

    @staticmethod
    def supports(pool: nn.Module) -> bool:
        """Whether ``pool`` is a 1-D max pool this module computes exactly.

        Parameters
        ----------
        pool : torch.nn.Module

        Returns
        -------
        bool
        """
        return (
            type(pool) is nn.MaxPool1d
            and not pool.ceil_mode
            and not pool.return_indices
            and TiledMaxPool._tuple(pool.dilation, 1) == (1,)
        )

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, padding={self.padding}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pool of ``x``.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, channels, time) or (channels, time)

        Returns
        -------
        torch.Tensor
        """
        k, stride, pad = self.kernel, self.stride, self.padding
        if pad:
            # -inf padding, as the pool's; laid out like x (channels-last stays so).
            order = sorted(range(x.dim()), key=lambda d: -x.stride(d))
            shape = list(x.shape)
            shape[-1] += 2 * pad
            padded = x.new_full([shape[d] for d in order], float("-inf"))
            padded = padded.permute([order.index(d) for d in range(x.dim())])
            padded[..., pad : pad + x.shape[-1]] = x
            x = padded
        n_out = (x.shape[-1] - k) // stride + 1
        if n_out < 1:
            raise ValueError(f"input of length {x.shape[-1] - 2 * pad} is shorter than kernel {k}")
        span = 1
        windows = x
        while 2 * span <= k:
            # Each position holds the maximum of the next 2 * span inputs.
            windows = torch.maximum(windows[..., :-span], windows[..., span:])
            span *= 2
        last = (n_out - 1) * stride + 1
        # Two windows of span cover the k inputs (the same one when span == k);
        # the maximum also makes a fresh tensor, never a view of the input.
        head = windows[..., 0:last:stride]
        return torch.maximum(head, windows[..., k - span : k - span + last : stride])


def slide_max_pools(module: nn.Module) -> int:
    """Replace every 1-D max pool of ``module`` by :class:`SlidingMaxPool1d`.

    Parameters
    ----------
    module : torch.nn.Module
        Changed in place; the function it computes is unchanged, bit for bit.

    Returns
    -------
    int
        How many pools were replaced.
    """
    return _replace_children(module, SlidingMaxPool1d.supports, SlidingMaxPool1d)


def tile_max_pools(module: nn.Module) -> int:
    """Replace every max pool of ``module`` whose windows tile its input by :class:`TiledMaxPool`.

    Parameters
    ----------
    module : torch.nn.Module
        Changed in place (a ``torch.fx`` graph module works too); the function
        it computes is unchanged, bit for bit.

    Returns
    -------
    int
        How many pools were replaced.
    """
    return _replace_children(module, TiledMaxPool.supports, TiledMaxPool)


class PrepackedConv(nn.Module):
    """A 2-D or 3-D convolution whose weight oneDNN reorders once, not on every call.

    On the CPU, ``torch.nn.functional.conv2d``/``conv3d`` hand oneDNN a plain
    weight, and oneDNN reorders it into the blocked layout its AMX/AVX-512
    kernels read on every call: about 100 ms of a paper-scale bfloat16 clip
    (``bench/inference.py --quick --kernels``). This module reorders the weight
    on its first call (for that input's shape) and keeps it, then calls
    oneDNN's convolution on the packed weight. The output is the same
    (the same kernel runs); the packed copy is rebuilt if the weight changes
    dtype or storage and is never saved.

    Parameters
    ----------
    conv : torch.nn.Conv2d or torch.nn.Conv3d
        Zero-padded, with numeric padding, on the CPU.
    """

    def __init__(self, conv: nn.Conv2d | nn.Conv3d) -> None:
        super().__init__()
        if not self.supports(conv):
            raise ValueError(
                f"only a zero-padded CPU Conv2d or Conv3d can be prepacked, got {conv}"
            )
        self.conv = conv
        self._packed: tuple[tuple, torch.Tensor] | None = None

    @staticmethod
    def supports(conv: nn.Module) -> bool:
        """Whether ``conv`` is a convolution this module can run (and oneDNN is there).

        Parameters
        ----------
        conv : torch.nn.Module

        Returns
        -------
        bool
        """
        return (
            type(conv) in (nn.Conv2d, nn.Conv3d)
            and conv.padding_mode == "zeros"
            and not isinstance(conv.padding, str)
            and conv.weight.device.type == "cpu"
            and torch.backends.mkldnn.is_available()
        )

    def __getstate__(self) -> dict[str, Any]:
        # oneDNN's opaque tensors neither copy nor pickle; the next call packs again.
        state = dict(self.__dict__)
        state["_packed"] = None
        return state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped convolution of ``x``.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, channels, *spatial)``, in the weight's dtype.

        Returns
        -------
        torch.Tensor
        """
        conv = self.conv
        if not self._fast(x):
            return conv(x)
        return torch.ops.mkldnn._convolution_pointwise(
            x, self._weight(x), conv.bias, conv.padding, conv.stride, conv.dilation,
            conv.groups, "none", [], "",
        )  # fmt: skip

    def _fast(self, x: torch.Tensor) -> bool:
        weight = self.conv.weight
        return x.dtype == weight.dtype and x.device.type == "cpu" and not torch.is_grad_enabled()

    def _weight(self, x: torch.Tensor) -> torch.Tensor:
        """The weight in oneDNN's layout for inputs shaped like ``x`` (packed on first use)."""
        conv = self.conv
        key = (conv.weight.data_ptr(), conv.weight.dtype, tuple(x.shape))
        if self._packed is None or self._packed[0] != key:
            reorder = (
                torch._C._nn.mkldnn_reorder_conv2d_weight
                if isinstance(conv, nn.Conv2d)
                else torch._C._nn.mkldnn_reorder_conv3d_weight
            )
            weight = reorder(
                conv.weight.detach().to_mkldnn(),
                conv.padding,
                conv.stride,
                conv.dilation,
                conv.groups,
                list(x.shape),
            )
            self._packed = (key, weight)
        return self._packed[1]


class FusedConv(PrepackedConv):
    """A prepacked convolution with the residual addition and ReLU after it done by oneDNN.

    ``relu(conv(x) + residual)`` (or ``relu(conv(x))``, or ``conv(x) + residual``) in
    one oneDNN call: the addition and the activation run on the convolution's
    output while it is still in cache, instead of as two more passes over memory.
    The ReLU is exact; the addition rounds once (the sum is rounded to
    bfloat16) where the unfused layers round twice (the convolution's output,
    then the sum), so bfloat16 outputs differ by bfloat16 rounding.

    The residual tensor is overwritten with the result: :func:`fuse_convolutions`
    only fuses an addition whose other operand nobody reads afterwards.

    Parameters
    ----------
    conv : torch.nn.Conv2d or torch.nn.Conv3d
        As for :class:`PrepackedConv`.
    relu : bool, default=False
        Apply a ReLU to the result.
    residual : bool, default=False
        ``forward`` takes a second tensor added to the convolution's output.
    """

    def __init__(
        self, conv: nn.Conv2d | nn.Conv3d, *, relu: bool = False, residual: bool = False
    ) -> None:
        super().__init__(conv)
        self.relu = relu
        self.residual = residual

    def extra_repr(self) -> str:
        return f"relu={self.relu}, residual={self.residual}"

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``conv(x)``, plus ``residual`` when given, then the ReLU when set.

        Parameters
        ----------
        x : torch.Tensor
            ``(batch, channels, *spatial)``, in the weight's dtype.
        residual : torch.Tensor, optional
            Shaped like the output; required exactly when ``residual=True``.
            Overwritten with the result on the fast path.

        Returns
        -------
        torch.Tensor
        """
        if (residual is not None) != self.residual:
            raise ValueError(
                f"this convolution was built with residual={self.residual}, "
                f"but forward got residual={'a tensor' if residual is not None else None}"
            )
        conv = self.conv
        unary = "relu" if self.relu else "none"
        args = (conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups)
        if self._fast(x) and (residual is None or self._writable(x, residual)):
            weight = self._weight(x)
            if residual is None:
                return torch.ops.mkldnn._convolution_pointwise(x, weight, *args, unary, [], "")
            # After an addition oneDNN refuses the name "none": None means no activation.
            return torch.ops.mkldnn._convolution_pointwise_.binary(
                residual, x, weight, *args, "add", None, "relu" if self.relu else None, [], ""
            )
        out = PrepackedConv.forward(self, x)
        if residual is not None:
            out = out + residual
        return torch.relu(out) if self.relu else out

    @staticmethod
    def _writable(x: torch.Tensor, residual: torch.Tensor) -> bool:
        # oneDNN writes the sum into the residual: it must be laid out as the output is.
        layout = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
        if layout is None or not x.is_contiguous(memory_format=layout):
            layout = torch.contiguous_format
        return residual.dtype == x.dtype and residual.is_contiguous(memory_format=layout)


def prepack_convs(module: nn.Module) -> int:
    """Wrap every 2-D and 3-D convolution of ``module`` in :class:`PrepackedConv`, in place.

    Convolutions inside another wrapper that reads their weight
    (:class:`~conchshell.video.stem.RepeatedFramesConv3d`) are left alone.

    Parameters
    ----------
    module : torch.nn.Module
        An inference module on the CPU (a ``torch.fx`` graph module works too).

    Returns
    -------
    int
        How many convolutions were wrapped.
    """
    from conchshell.video.stem import RepeatedFramesConv3d

    return _replace_children(
        module, PrepackedConv.supports, PrepackedConv, skip=(RepeatedFramesConv3d, PrepackedConv)
    )


def fuse_convolutions(module: nn.Module) -> int:
    """Fold each ReLU and residual addition after a prepacked convolution into it.

    In every ``torch.fx.GraphModule`` inside ``module``, a
    :class:`PrepackedConv` whose only reader is

    - a ReLU module becomes ``FusedConv(relu=True)``;
    - an addition becomes ``FusedConv(residual=True)`` taking the addition's
      other operand, and also ``relu=True`` when a ReLU module is the
      addition's only reader. The other operand is overwritten, so this is
      done only where it is an intermediate result (a module's output, not
      the graph's input) that every other reader has read before the
      convolution runs.

    Run it after :func:`prepack_convs`. For inference only.

    Parameters
    ----------
    module : torch.nn.Module
        Changed in place.

    Returns
    -------
    int
        How many convolutions were fused with something.
    """
    count = 0
    for graph_module in [m for m in module.modules() if isinstance(m, torch.fx.GraphModule)]:
        count += _fuse_graph(graph_module)
    return count


def _fuse_graph(graph_module: torch.fx.GraphModule) -> int:
    import operator

    adds = (operator.add, operator.iadd, torch.add)
    modules = dict(graph_module.named_modules())
    order = {node: i for i, node in enumerate(graph_module.graph.nodes)}
    calls = Counter(node.target for node in graph_module.graph.nodes if node.op == "call_module")

    def module_of(node: object) -> nn.Module | None:
        if isinstance(node, torch.fx.Node) and node.op == "call_module":
            return modules.get(node.target)
        return None

    def only_reader(node: torch.fx.Node) -> torch.fx.Node | None:
        return next(iter(node.users)) if len(node.users) == 1 else None

    def owned(value: object, at: torch.fx.Node, via: torch.fx.Node) -> bool:
        # May ``value``'s memory be overwritten at ``at``? Only an intermediate result
        # computed before, that every reader but ``via`` has read by then (following
        # in-place aliases back to where the memory was allocated).
        layer = module_of(value)
        if (
            layer is None
            or order[value] >= order[at]
            or any(order[user] >= order[at] for user in value.users if user is not via)
        ):
            return False
        if isinstance(layer, FusedConv) and layer.residual:
            return owned(value.args[1], at, value)
        if isinstance(layer, _ACTIVATIONS) and layer.inplace:
            return owned(value.args[0], at, value)
        return isinstance(layer, (*_FRESH_OUTPUT, *_ACTIVATIONS, PrepackedConv, TiledMaxPool))

    count = 0
    for node in list(graph_module.graph.nodes):
        conv = module_of(node)
        if type(conv) is not PrepackedConv or len(node.args) != 1 or node.kwargs:
            continue
        if calls[node.target] > 1:
            continue  # a layer called twice would change at both calls
        reader = only_reader(node)
        residual = last = None
        if (
            reader is not None
            and reader.op == "call_function"
            and reader.target in adds
            and len(reader.args) == 2
            and not reader.kwargs
        ):
            other = reader.args[1] if reader.args[0] is node else reader.args[0]
            if other is node or not owned(other, node, reader):
                continue
            residual, last = other, reader
            reader = only_reader(reader)
        relu = isinstance(module_of(reader), nn.ReLU)
        if relu:
            last = reader
        if last is None:
            continue
        fused = FusedConv(conv.conv, relu=relu, residual=residual is not None)
        parent, _, name = node.target.rpartition(".")
        setattr(graph_module.get_submodule(parent), name, fused)
        modules[node.target] = fused
        if residual is not None:
            node.args = (node.args[0], residual)
        last.replace_all_uses_with(node)
        # The ReLU and the addition folded in have no readers left.
        while last is not node:
            before = last.args[0] if last.op == "call_module" else None
            graph_module.graph.erase_node(last)
            last = before if before is not None else node
        count += 1
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return count


def set_threads(threads: int | None = None, interop: int | None = None) -> dict[str, int]:
    """Set torch's intra-op (and, if still possible, inter-op) thread counts.

    Parameters
    ----------
    threads : int, optional
        Threads for one operator (``torch.set_num_threads``); the number of
        physical cores is usually best.
    interop : int, optional
        Threads running independent operators; torch only accepts this
        before its first parallel work, so later calls leave it unchanged.

    Returns
    -------
    dict
        The settings in force afterwards: ``{"threads": ..., "interop": ...}``.
    """
    for name, value in (("threads", threads), ("interop", interop)):
        if value is not None:
            check_positive_int(value, name)
    if threads is not None:
        torch.set_num_threads(threads)
    if interop is not None and interop != torch.get_num_interop_threads():
        try:
            torch.set_num_interop_threads(interop)
        except RuntimeError:
            pass  # too late in this process: the setting stays as it was
    return {"threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads()}


def _prepare(
    module: nn.Module,
    dtype: torch.dtype,
    memory_format: torch.memory_format | None,
    compile: bool,
) -> nn.Module:
    module = module.to(dtype)
    if memory_format is not None:
        module = module.to(memory_format=memory_format)
    if compile:
        module = torch.compile(module, dynamic=False)
    if dtype == torch.float32 and memory_format is None:
        return module
    return CastModule(module, dtype, memory_format)


def optimize(
    model: Any,
    *,
    precision: str = "bfloat16",
    compile: bool = False,
    threads: int | None = None,
    copy: bool = True,
) -> Any:
    """Prepare a fitted (or initialised) :class:`ImageToMusic` for fast generation.

    Parameters
    ----------
    model : ImageToMusic
        Fitted, loaded, or built untrained by ``initialize()``.
    precision : {"bfloat16", "float32"}, default="bfloat16"
        Arithmetic of I3D, the generator and the decoder. ``"float32"``
        gives the original model's output up to float rounding;
        ``"bfloat16"`` is about twice as fast on CPUs with native bf16 and
        changes the audio slightly (``docs/performance.md`` gives the
        measured mel-L1).
    compile : bool, default=False
        Wrap the three heavy networks in ``torch.compile``. The first call
        then compiles (minutes on a small CPU).
    threads : int, optional
        Intra-op threads for torch (a process-wide setting; see
        :func:`set_threads`). ``None`` leaves torch's default.
    copy : bool, default=True
        Optimise a deep copy and leave ``model`` untouched. ``False``
        changes ``model`` in place (no second copy of the weights in memory).

    Returns
    -------
    ImageToMusic
        The optimised model, with ``inference_`` describing what was done
        (precision, compiled, folded weight norms and batch norms). Use it for
        ``predict``; save the original instead (its state-dict keys differ).

    Raises
    ------
    ValueError
        If ``precision`` is unknown.
    sklearn.exceptions.NotFittedError
        If the model was neither fitted nor initialised.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be a bool, got {compile!r}")
    if not isinstance(copy, bool):
        raise TypeError(f"copy must be a bool, got {copy!r}")
    check_is_fitted(model, "generator_")
    if getattr(model, "inference_", None) is not None:
        raise ValueError(
            f"this model is already optimised ({model.inference_}); start from the original"
        )
    set_threads(threads)
    dtype = _DTYPES[precision]
    out = _copy.deepcopy(model) if copy else model

    for name in ("encoder_", "extractor_", "codec_", "generator_", "discriminator_"):
        comp = getattr(out, name, None)
        if comp is not None and hasattr(comp, "module_"):
            comp.module_.eval().requires_grad_(False)

    weight_norms = 0
    for name in ("generator_", "discriminator_", "codec_"):
        comp = getattr(out, name, None)
        if comp is not None and hasattr(comp, "module_"):
            weight_norms += fold_weight_norm(comp.module_)

    batch_norms = stems = pools = 0
    extractor = out.extractor_
    if hasattr(extractor, "module_"):
        # ``out`` is already a copy or the caller's to change: fold without another copy.
        extractor.module_, batch_norms = fold_batch_norm(extractor.module_, inplace=True)
        # The forged video repeats its frames: the stem convolves each run once.
        stems = distinct_frame_stem(extractor.module_)
        pools = tile_max_pools(extractor.module_)
        video_layout = torch.channels_last_3d if _has_conv3d(extractor.module_) else None
        extractor.module_ = _prepare(extractor.module_, dtype, video_layout, compile)

    # The generator and the decoder are 1-D networks. In bfloat16 their
    # convolutions run as channels-last 2-D ones (oneDNN's fast kernels); in
    # float32 they stay as they are, so the result matches the original
    # model's to float rounding (the 2-D kernels sum in another order, which
    # can move a latent across a codebook boundary).
    converted = 0
    decoders = out.codec_.module_.decoders
    level = int(out.level_)
    # A generator that is no network (MosaicGenerator) keeps its float32 latents as they are.
    cast_generator = getattr(out.generator_, "is_network", True)

    def networks() -> list[nn.Module]:
        return ([out.generator_.module_] if cast_generator else []) + [decoders[level]]

    if dtype != torch.float32:
        # Cast first, so replacing each convolution copies half as many bytes.
        for m in networks():
            m.to(dtype)
        converted += sum(convs_as_2d(m) for m in networks())
    # Bit-identical on every path: the generators' overlapping 1-D pools.
    sliding = sum(slide_max_pools(m) for m in networks())
    in_place = sum(inplace_activations(m) for m in (extractor.module_, *networks()))
    if cast_generator:
        out.generator_.module_ = _prepare(out.generator_.module_, dtype, None, compile)
    decoders[level] = _prepare(decoders[level], dtype, None, compile)
    prepacked = fused = 0
    if dtype != torch.float32 and not compile:
        # float32 keeps torch's own calls, so its output matches the original's to rounding.
        prepacked = sum(prepack_convs(m) for m in (extractor.module_, *networks()))
        # I3D is a traced graph: its ReLUs and residual additions join the convolutions.
        fused = fuse_convolutions(extractor.module_)

    out.inference_ = {
        "precision": precision,
        "compiled": compile,
        "weight_norms_folded": weight_norms,
        "batch_norms_folded": batch_norms,
        "distinct_frame_stems": stems,
        "tiled_max_pools": pools,
        "sliding_max_pools": sliding,
        "convs_as_2d": converted,
        "prepacked_convs": prepacked,
        "fused_convs": fused,
        "in_place_ops": in_place,
        "threads": torch.get_num_threads(),
    }
    return out


def _has_conv3d(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv3d) for m in module.modules())
