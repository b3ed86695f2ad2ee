"""The inference fast path: same audio in float32, close audio in bfloat16, originals untouched."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from conchshell import presets
from conchshell.datasets import make_toy_dataset
from conchshell.inference import (
    CastModule,
    Conv1dAs2d,
    convs_as_2d,
    fold_batch_norm,
    fold_weight_norm,
    inplace_activations,
    optimize,
    set_threads,
)

pytestmark = pytest.mark.filterwarnings("ignore:I3DExtractor has no weights file")


@pytest.fixture(scope="module")
def toy():
    return make_toy_dataset(n_per_category=1, n_categories=6, n_samples=16000, random_state=0)


@pytest.fixture(scope="module")
def fitted(toy):
    return presets.conchshell("tiny", level="high", random_state=0, verbose=0).fit(toy)


@pytest.fixture(scope="module")
def images(toy):
    return toy.stack_images()[:3]


def _parametrized(module: nn.Module) -> int:
    return sum(parametrize.is_parametrized(m) for m in module.modules())


def _rel_l2(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def test_float32_fast_path_gives_the_same_audio(fitted, images):
    fast = optimize(fitted, precision="float32")
    np.testing.assert_allclose(fast.predict(images), fitted.predict(images), rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        fast.predict_latents(images), fitted.predict_latents(images), rtol=0, atol=1e-4
    )


@pytest.mark.parametrize("level", ["deep", "low"])
def test_float32_fast_path_matches_at_every_level(level, images):
    model = presets.conchshell("tiny", level=level, random_state=0, verbose=0).initialize()
    fast = optimize(model, precision="float32")
    cats = [0, 1, 2]
    np.testing.assert_allclose(
        fast.predict(images, categories=cats), model.predict(images, categories=cats), atol=1e-6
    )


def test_bfloat16_fast_path_stays_close(fitted, images):
    reference = fitted.predict(images)
    fast = optimize(fitted, precision="bfloat16")
    clips = fast.predict(images)
    assert clips.dtype == np.float32 and clips.shape == reference.shape
    # Measured 0.003 (tiny fitted model): bf16 keeps 8 mantissa bits.
    assert _rel_l2(reference, clips) < 0.05
    latents = fast.predict_latents(images)
    assert latents.dtype == torch.float32
    scale = fitted.predict_latents(images).abs().max()
    assert (latents - fitted.predict_latents(images)).abs().max() < 0.02 * scale


def test_weight_norm_is_folded_and_batch_norm_fused(fitted):
    assert _parametrized(fitted.generator_.module_) > 0
    assert _parametrized(fitted.discriminator_.module_) > 0
    fast = optimize(fitted, precision="float32")
    assert _parametrized(fast.generator_.module_) == 0
    assert _parametrized(fast.discriminator_.module_) == 0
    state = fast.generator_.module_.state_dict()
    assert not [k for k in state if "parametrizations" in k]
    info = fast.inference_
    assert info["weight_norms_folded"] == _parametrized(fitted.generator_.module_) + _parametrized(
        fitted.discriminator_.module_
    )
    n_norms = sum(isinstance(m, nn.BatchNorm3d) for m in fitted.extractor_.module_.modules())
    assert n_norms > 0 and info["batch_norms_folded"] == n_norms
    assert not any(isinstance(m, nn.BatchNorm3d) for m in fast.extractor_.module_.modules())
    assert info["precision"] == "float32" and info["compiled"] is False


def test_the_original_is_untouched(fitted, images):
    before = {k: v.clone() for k, v in fitted.generator_.module_.state_dict().items()}
    reference = fitted.predict(images)
    fast = optimize(fitted, precision="bfloat16")
    assert fast is not fitted and not hasattr(fitted, "inference_")
    after = fitted.generator_.module_.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.dtype == torch.float32 for p in fitted.extractor_.module_.parameters())
    np.testing.assert_array_equal(fitted.predict(images), reference)


def test_in_place_returns_the_same_model(toy, images):
    model = presets.conchshell("tiny", level="high", random_state=0, verbose=0).initialize()
    reference = model.predict(images, categories=[0, 1, 2])
    same = optimize(model, precision="float32", copy=False)
    assert same is model and _parametrized(model.generator_.module_) == 0
    np.testing.assert_allclose(model.predict(images, categories=[0, 1, 2]), reference, atol=1e-6)


def test_bad_arguments_are_refused(fitted):
    with pytest.raises(ValueError, match="precision"):
        optimize(fitted, precision="float16")
    with pytest.raises(TypeError, match="compile"):
        optimize(fitted, compile="yes")
    with pytest.raises(NotFittedError):
        optimize(presets.conchshell("tiny"))
    with pytest.raises(ValueError, match="already optimised"):
        optimize(optimize(fitted, precision="float32"))
    with pytest.raises(ValueError, match="threads"):
        set_threads(0)
    with pytest.raises(TypeError, match="threads"):
        set_threads(1.5)


def test_set_threads_reports_the_settings():
    current = torch.get_num_threads()
    assert set_threads(current) == {
        "threads": current,
        "interop": torch.get_num_interop_threads(),
    }


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv1d(6, 5, 3, padding=2, dilation=2),
        nn.Conv1d(4, 8, 4, stride=2, padding=1, groups=2),
        nn.Conv1d(3, 3, 1, bias=False),
        nn.ConvTranspose1d(6, 4, 4, stride=2, padding=1),
        nn.ConvTranspose1d(4, 2, 3, stride=2, padding=1, output_padding=1),
    ],
)
def test_conv1d_as_2d_computes_the_same(conv):
    x = torch.randn(2, conv.in_channels, 17)
    with torch.no_grad():
        expected = conv(x)
        got = Conv1dAs2d(conv)(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_convs_as_2d_replaces_plain_convolutions_only():
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv1d(4, 4, 3, padding=1, padding_mode="reflect"),
        weight_norm(nn.Conv1d(4, 2, 1)),
    )
    x = torch.randn(1, 2, 9)
    with torch.no_grad():
        expected = model(x)
    assert convs_as_2d(model) == 1  # reflect padding and weight norm stay
    assert fold_weight_norm(model) == 1
    assert convs_as_2d(model) == 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="padding"):
        Conv1dAs2d(nn.Conv1d(2, 2, 3, padding="same"))


def test_fold_weight_norm_keeps_the_function():
    conv = weight_norm(nn.Conv1d(3, 4, 5))
    with torch.no_grad():
        conv.parametrizations.weight.original0.mul_(1.7)
    x = torch.randn(2, 3, 11)
    with torch.no_grad():
        expected = conv(x)
    assert fold_weight_norm(conv) == 1
    assert not parametrize.is_parametrized(conv)
    assert sorted(n for n, _ in conv.named_parameters()) == ["bias", "weight"]
    with torch.no_grad():
        torch.testing.assert_close(conv(x), expected)


def test_fold_batch_norm_is_exact_in_eval_mode():
    model = nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4), nn.ReLU())
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.normal_()
    model.eval()
    x = torch.randn(2, 3, 4, 6, 6)
    with torch.no_grad():
        expected = model(x)
    folded, count = fold_batch_norm(model)
    assert count == 1
    with torch.no_grad():
        torch.testing.assert_close(folded(x), expected, atol=1e-5, rtol=1e-5)
    plain = nn.Conv1d(1, 1, 1)
    assert fold_batch_norm(plain) == (plain, 0)


def _conv_bn_net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 4, 3, bias=False), nn.BatchNorm3d(4), nn.ReLU())
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].weight.normal_()
        model[1].bias.normal_()
    return model.eval()


def test_fold_batch_norm_matches_torch_fuse_bit_for_bit():
    from torch.fx.experimental.optimization import fuse

    x = torch.randn(2, 3, 4, 6, 6)
    with torch.no_grad():
        expected = fuse(_conv_bn_net())(x)
        copied, count = fold_batch_norm(_conv_bn_net())
        assert count == 1
        assert torch.equal(copied(x), expected)
        original = _conv_bn_net()
        folded, count = fold_batch_norm(original, inplace=True)
        assert count == 1
        assert torch.equal(folded(x), expected)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    # In place, the graph reuses the caller's convolution instead of a copy of it.
    assert folded.get_submodule("0") is original[0]
    untouched = _conv_bn_net()
    fold_batch_norm(untouched)
    assert untouched[0].bias is None


def test_fold_batch_norm_leaves_pairs_it_cannot_fold():
    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)
            self.batch_stats = nn.BatchNorm2d(2, track_running_stats=False)

        def forward(self, x):
            y = self.conv(x)
            return self.norm(y) + y + self.batch_stats(self.conv(x))  # y read twice

    model = Branch().eval()
    folded, count = fold_batch_norm(model)
    assert count == 0
    x = torch.randn(3, 2, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))


def test_cast_module_casts_floats_and_passes_integers():
    emb = nn.Embedding(3, 2).to(torch.bfloat16)

    class Net(nn.Module):
        def forward(self, x, ids):
            assert x.dtype == torch.bfloat16 and ids.dtype == torch.long
            return x.sum(dim=1, keepdim=True) + emb(ids)

    out = CastModule(Net(), torch.bfloat16)(torch.ones(2, 4), torch.tensor([0, 2]))
    assert out.dtype == torch.float32 and out.shape == (2, 2)
    video = torch.randn(1, 3, 2, 4, 4)
    wrapped = CastModule(nn.Identity(), torch.float32, torch.channels_last_3d)
    assert wrapped(video).is_contiguous(memory_format=torch.channels_last_3d)
    # Dtype and layout change in one copy, to the same values as two.
    seen = []
    caught = CastModule(nn.Identity(), torch.bfloat16, torch.channels_last_3d)
    caught.module.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    caught(video)
    assert seen[0].dtype == torch.bfloat16
    assert seen[0].is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(seen[0], video.to(torch.bfloat16))


class _Bottleneck(nn.Module):
    """A residual block shaped like I3D's: identity shortcut, shared-free ReLUs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x + self.act(self.conv(x)))


def test_inplace_activations_in_a_traced_graph_keep_the_function():
    torch.manual_seed(0)
    net = torch.fx.symbolic_trace(_Bottleneck())
    x = torch.randn(2, 4, 8)
    want = net(x)
    # the ReLU after the conv, the addition (into the branch, not the input) and the final ReLU
    assert inplace_activations(net) == 3
    assert net.act.inplace and net.out.inplace
    x_before = x.clone()
    torch.testing.assert_close(net(x), want, rtol=0, atol=0)
    assert torch.equal(x, x_before)  # the caller's input is never overwritten


def test_inplace_activations_leave_shared_and_input_activations_alone():
    relu = nn.ReLU()
    seq = nn.Sequential(relu, nn.Conv1d(2, 2, 1), nn.LeakyReLU(0.2), nn.Linear(3, 3), nn.ReLU())
    assert inplace_activations(seq) == 1
    assert not seq[0].inplace and seq[2].inplace and not seq[4].inplace

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 1)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.conv(x)) + self.act(x)  # second call reads the input

    graph = torch.fx.symbolic_trace(Shared())
    inplace_activations(graph)
    assert not graph.act.inplace


def test_optimize_reports_in_place_operations(fitted, images):
    fast = optimize(fitted, precision="float32")
    assert fast.inference_["in_place_ops"] > 0
    np.testing.assert_allclose(fast.predict(images), fitted.predict(images), atol=1e-5)


def test_prepacked_convolutions_give_the_same_bf16_output(fitted, images, monkeypatch):
    from conchshell import inference
    from conchshell.inference import PrepackedConv

    # Fusing the residual additions rounds differently; this test is about the packing.
    monkeypatch.setattr(inference, "fuse_convolutions", lambda module: 0)
    fast = optimize(fitted, precision="bfloat16")
    assert fast.inference_["prepacked_convs"] > 0
    first = fast.predict(images)
    again = fast.predict(images)  # the packed weights are reused
    unpacked = optimize(fitted, precision="bfloat16")
    for module in (
        unpacked.extractor_.module_,
        unpacked.generator_.module_,
        unpacked.codec_.module_,
    ):
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, PrepackedConv):
                    setattr(parent, name, child.conv)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, unpacked.predict(images))
    assert optimize(fitted, precision="float32").inference_["prepacked_convs"] == 0


class _TwoBlocks(nn.Module):
    """Two residual blocks shaped like I3D's (the second with a projection shortcut)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 8, 3, padding=1)
        self.a = nn.Sequential(
            nn.Conv3d(8, 4, 1), nn.ReLU(), nn.Conv3d(4, 8, (3, 1, 1), padding=(1, 0, 0))
        )
        self.b = nn.Sequential(nn.Conv3d(8, 4, 1), nn.ReLU(), nn.Conv3d(4, 16, 1))
        self.project = nn.Conv3d(8, 16, 1)
        self.act = nn.ModuleList(nn.ReLU() for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act[0](self.stem(x))
        x = self.act[1](x + self.a(x))
        return self.act[2](self.project(x) + self.b(x))


def _bf16_graph(module: nn.Module) -> torch.fx.GraphModule:
    from conchshell.inference import prepack_convs

    torch.manual_seed(0)
    graph = torch.fx.symbolic_trace(module.eval())
    graph = graph.to(torch.bfloat16).to(memory_format=torch.channels_last_3d)
    prepack_convs(graph)
    return graph


def test_fuse_convolutions_folds_relus_and_residual_additions():
    from conchshell.inference import FusedConv, fuse_convolutions

    torch.manual_seed(0)
    net = _TwoBlocks()
    plain = _bf16_graph(net)
    fused = _bf16_graph(net)
    assert fuse_convolutions(fused) == 5
    kinds = sorted((m.relu, m.residual) for m in fused.modules() if isinstance(m, FusedConv))
    # stem+ReLU, a/b's first conv+ReLU, a's last conv+x+ReLU, b's last conv+projection+ReLU
    assert kinds == [(True, False)] * 3 + [(True, True)] * 2
    assert not any(isinstance(m, nn.ReLU) for m in fused.modules())
    x = torch.randn(2, 3, 4, 6, 6).to(torch.bfloat16).to(memory_format=torch.channels_last_3d)
    kept = x.clone()
    with torch.inference_mode():
        want, got = plain(x).float(), fused(x).float()
    torch.testing.assert_close(x, kept, rtol=0, atol=0)  # the input is never written
    assert (got >= 0).all()
    # One bfloat16 rounding fewer per residual block: equal to bf16 rounding.
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)
    with torch.no_grad():
        reference = net.to(torch.bfloat16)(x).float()
    torch.testing.assert_close(got, reference, rtol=2e-2, atol=2e-2)


def test_fuse_convolutions_leaves_inputs_and_later_readers_alone():
    from conchshell.inference import FusedConv, fuse_convolutions

    class Risky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv3d(4, 4, 1)
            self.other = nn.Conv3d(4, 4, 1)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            kept = self.other(x)
            y = self.act(self.conv(x) + x)  # x is the caller's tensor: never overwritten
            z = self.other(kept) + kept  # kept is read after this addition
            w = self.act(self.conv(z))  # would fuse, but self.conv is also called above
            return y + z + kept + w

    graph = _bf16_graph(Risky())
    x = torch.randn(1, 4, 2, 3, 3).to(torch.bfloat16).to(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        want = graph(x).float()
    assert fuse_convolutions(graph) == 0
    assert not any(isinstance(m, FusedConv) for m in graph.modules())
    with torch.inference_mode():
        torch.testing.assert_close(graph(x).float(), want, rtol=0, atol=0)


def test_fused_conv_checks_its_residual_and_falls_back_with_gradients():
    from conchshell.inference import FusedConv

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x, r = torch.randn(2, 3, 6, 6), torch.randn(2, 5, 6, 6)
    fused = FusedConv(conv, relu=True, residual=True)
    with pytest.raises(ValueError, match="residual=True"):
        fused(x)
    with pytest.raises(ValueError, match="residual=False"):
        FusedConv(conv)(x, r)
    out = fused(x, r)  # gradients on: the plain layers
    torch.testing.assert_close(out, torch.relu(conv(x) + r))
    out.sum().backward()
    assert conv.weight.grad is not None
    with torch.inference_mode():
        fast = fused(x, r.clone())  # float32 oneDNN path
    torch.testing.assert_close(fast, out.detach(), rtol=1e-5, atol=1e-5)
    # An addition without a ReLU after it (oneDNN refused the name "none" there).
    plain_sum = FusedConv(conv, residual=True)
    with torch.inference_mode():
        summed = plain_sum(x, r.clone())
    torch.testing.assert_close(summed, conv(x).detach() + r, rtol=1e-5, atol=1e-5)


def test_optimize_fuses_i3d_and_stays_close(fitted, images, monkeypatch):
    from conchshell import inference

    fast = optimize(fitted, precision="bfloat16")
    assert fast.inference_["fused_convs"] > 0
    assert optimize(fitted, precision="float32").inference_["fused_convs"] == 0
    monkeypatch.setattr(inference, "fuse_convolutions", lambda module: 0)
    unfused = optimize(fitted, precision="bfloat16")
    with torch.inference_mode():
        feats = [m._features(torch.as_tensor(images)).float() for m in (fast, unfused)]
    torch.testing.assert_close(feats[0], feats[1], rtol=0.05, atol=0.05)
    np.testing.assert_allclose(fast.predict(images), unfused.predict(images), rtol=0, atol=0.05)


@pytest.mark.parametrize(
    ("pool", "shape"),
    [
        (nn.MaxPool3d((2, 1, 1), (2, 1, 1)), (2, 5, 7, 4, 3)),  # I3D's temporal pool, odd T
        (nn.MaxPool3d(2), (1, 3, 6, 5, 4)),
        (nn.MaxPool2d((1, 3)), (2, 4, 3, 10)),
        (nn.MaxPool1d(4), (3, 2, 17)),
        (nn.MaxPool3d((2, 1, 1)), (4, 5, 2, 2)),  # no batch axis
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tiled_max_pool_is_the_pool_bit_for_bit(pool, shape, dtype):
    from conchshell.inference import TiledMaxPool

    torch.manual_seed(0)
    x = torch.randn(shape).to(dtype)
    if x.dim() == 5:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    tiled = TiledMaxPool(pool)
    want, got = pool(x), tiled(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    if x.dim() == 5:
        assert got.is_contiguous(memory_format=torch.channels_last_3d)


def test_tiled_max_pool_refuses_overlapping_or_padded_windows():
    from conchshell.inference import TiledMaxPool, tile_max_pools

    refused = [
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),  # I3D's stem pool: overlapping
        nn.MaxPool2d(2, padding=1),
        nn.MaxPool1d(2, ceil_mode=True),
        nn.MaxPool1d(2, return_indices=True),
        nn.MaxPool1d(2, dilation=2),
        nn.AvgPool1d(2),
    ]
    for pool in refused:
        assert not TiledMaxPool.supports(pool)
        with pytest.raises(ValueError, match="kernel equals its stride"):
            TiledMaxPool(pool)
    net = nn.Sequential(*refused[:2], nn.MaxPool3d((2, 1, 1)))
    assert tile_max_pools(net) == 1 and isinstance(net[2], TiledMaxPool)
    x = torch.randn(1, 1, 2, 2, 2)
    one = TiledMaxPool(nn.MaxPool3d(1))(x)
    assert torch.equal(one, x) and one.data_ptr() != x.data_ptr()  # a copy, as the pool's


def test_optimize_tiles_i3d_temporal_pool(fitted):
    for precision in ("float32", "bfloat16"):
        assert optimize(fitted, precision=precision).inference_["tiled_max_pools"] == 1


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [(10, 1, 1), (10, 2, 1), (10, None, 0), (4, 4, 2), (7, 3, 3), (1, 1, 0), (2, 1, 1)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_sliding_max_pool_is_the_pool_bit_for_bit(kernel, stride, padding, dtype, channels_last):
    from conchshell.inference import SlidingMaxPool1d

    torch.manual_seed(0)
    pool = nn.MaxPool1d(kernel, stride, padding)
    x = torch.randn(2, 21, 6).permute(0, 2, 1) if channels_last else torch.randn(2, 6, 21)
    x = x.to(dtype)
    x[1, 2, 5] = float("nan")  # propagates through both
    kept = x.clone()
    want, got = pool(x), SlidingMaxPool1d(pool)(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(got[1, 2]).any()
    torch.testing.assert_close(x, kept, rtol=0, atol=0, equal_nan=True)  # input untouched
    assert got.data_ptr() != x.data_ptr()  # a fresh tensor: an in-place ReLU may follow
    if channels_last and padding:
        assert got.stride(1) == 1  # the channels-last layout is kept for the next convolution
    # Without a batch axis too.
    torch.testing.assert_close(
        SlidingMaxPool1d(pool)(x[0]), pool(x[0]), rtol=0, atol=0, equal_nan=True
    )


def test_sliding_max_pool_refuses_what_it_cannot_compute():
    from conchshell.inference import SlidingMaxPool1d, slide_max_pools

    for pool in (
        nn.MaxPool1d(3, dilation=2),
        nn.MaxPool1d(3, ceil_mode=True),
        nn.MaxPool1d(3, return_indices=True),
        nn.MaxPool2d(3),
    ):
        assert not SlidingMaxPool1d.supports(pool)
        with pytest.raises(ValueError, match="can slide"):
            SlidingMaxPool1d(pool)
    net = nn.Sequential(nn.MaxPool1d(3, 1, 1), nn.MaxPool1d(2, dilation=2))
    assert slide_max_pools(net) == 1 and isinstance(net[0], SlidingMaxPool1d)
    with pytest.raises(ValueError, match="shorter than kernel 10"):
        SlidingMaxPool1d(nn.MaxPool1d(10))(torch.randn(1, 2, 9))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_optimize_slides_the_generator_pools_without_changing_a_bit(precision, monkeypatch):
    from conchshell import inference

    model = presets.conchshell("tiny", level="deep", random_state=0).initialize()
    n_pools = sum(isinstance(m, nn.MaxPool1d) for m in model.generator_.module_.modules())
    fast = optimize(model, precision=precision)
    assert n_pools > 0 and fast.inference_["sliding_max_pools"] == n_pools
    monkeypatch.setattr(inference, "slide_max_pools", lambda module: 0)
    plain = optimize(model, precision=precision)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(
        fast.predict(x, categories=[0, 1]), plain.predict(x, categories=[0, 1])
    )
