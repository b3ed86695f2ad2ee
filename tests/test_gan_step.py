"""One adversarial step through the real (tiny) codec: the audio losses train the generator."""

import math

import pytest
import torch

from conchshell.codec.jukebox import JukeboxCodec
from conchshell.gan.discriminator import MultiScaleDiscriminator
from conchshell.gan.generator import Generator
from conchshell.gan.losses import LOSS_TERMS, ConchShellLoss
from conchshell.gan.training import gan_step
from conchshell.levels import level_index as codec_level

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

SAMPLES = 1024
FEATURES = 24
SMALL_MEL = dict(n_fft=256, hop_length=64, win_length=256, n_mels=16)


@pytest.fixture(scope="module")
def codec():
    """The tiny codec, trained a few steps so its codebooks are seeded, then frozen."""
    t = torch.arange(4 * 2048) / 16000
    audio = 0.5 * torch.sin(2 * math.pi * 330 * t).reshape(4, 2048)
    audio = audio + 0.05 * torch.randn(audio.shape, generator=torch.Generator().manual_seed(0))
    trained = JukeboxCodec.sized("tiny", device="cpu", random_state=0, max_steps=3)
    trained.fit(audio.numpy())
    trained.freeze()
    # fit leaves its last gradients on the parameters; clear them so the tests
    # below can see that nothing new reaches the frozen codec.
    trained.module_.zero_grad(set_to_none=True)
    return trained


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(1)
    t = torch.arange(SAMPLES) / 16000
    audio = 0.4 * torch.sin(2 * math.pi * torch.tensor([[220.0], [440.0]]) * t)
    return dict(
        features=torch.randn(2, FEATURES, generator=gen),
        categories=torch.tensor([1, 4]),
        audio=audio + 0.02 * torch.randn(2, SAMPLES, generator=gen),
    )


def generator_for(codec, level):
    n_frames = codec.latent_length(SAMPLES, level)
    return Generator(
        level,
        in_features=FEATURES,
        emb_width=codec.emb_width,
        n_frames=n_frames,
        size="tiny",
        device="cpu",
        random_state=0,
    ).initialize()


def decoded(codec, latents, level):
    """Generator latents -> straight-through codes -> frozen, differentiable decoder."""
    quantized, _ = codec.quantize(latents, level=level)
    return codec.decode(quantized, level=level)


@pytest.mark.parametrize("term", ["wave", "mel"])
@pytest.mark.parametrize("level", ["deep", "low", "high"])
def test_audio_loss_alone_reaches_the_generator(codec, data, level, term):
    g = generator_for(codec, level)
    only = {name: 0.0 for name in LOSS_TERMS} | {term: 1.0}
    loss = ConchShellLoss(**only, **SMALL_MEL)
    latents = g.module_(data["features"], data["categories"])
    fake_audio = decoded(codec, latents, level)
    assert fake_audio.shape == data["audio"].shape
    terms = loss.generator(fake_audio=fake_audio, real_audio=data["audio"])
    assert float(terms[term]) > 0 and float(terms["total"]) == pytest.approx(float(terms[term]))
    terms["total"].backward()
    grads = [p.grad for p in g.module_.parameters()]
    assert all(grad is not None and bool(torch.isfinite(grad).all()) for grad in grads)
    # Every layer is reached, the input Linear layer (the far end) included.
    assert float(g.module_.linear.weight.grad.abs().sum()) > 0
    assert sum(float(grad.abs().sum()) for grad in grads) > 0
    # The codec stays frozen.
    assert all(p.grad is None and not p.requires_grad for p in codec.module_.parameters())


@pytest.mark.parametrize("level", ["deep", "high"])
def test_gan_step_changes_both_networks(codec, data, level):
    # The estimator's own step (conchshell.gan.training.gan_step), every loss term on.
    g = generator_for(codec, level)
    d = MultiScaleDiscriminator.sized("tiny", device="cpu", random_state=0).initialize()
    loss = ConchShellLoss(latent=5.0, code=8.0, **SMALL_MEL)
    opt_g = torch.optim.AdamW(g.module_.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.AdamW(d.module_.parameters(), lr=1e-3, betas=(0.5, 0.999))
    g_before = [p.detach().clone() for p in g.module_.parameters()]
    d_before = [p.detach().clone() for p in d.module_.parameters()]
    codec_before = [p.detach().clone() for p in codec.module_.parameters()]
    at_d_step: dict[str, list] = {}
    d_step = opt_d.step

    def watched_d_step(*args, **kwargs):
        # The discriminator's update sees detached fakes: no gradient in the generator yet.
        at_d_step["g_grads"] = [p.grad for p in g.module_.parameters()]
        out = d_step(*args, **kwargs)
        at_d_step["d_after"] = [p.detach().clone() for p in d.module_.parameters()]
        return out

    opt_d.step = watched_d_step
    record = gan_step(
        g.module_,
        d.module_,
        opt_g,
        opt_d,
        codec,
        loss,
        data["features"],
        data["categories"],
        data["audio"],
        codec_level(level),
    )

    assert not any(key.startswith("skipped") for key in record)
    assert all(math.isfinite(v) for v in record.values())
    assert all(record[f"g_{name}"] != 0.0 for name in LOSS_TERMS)
    assert {"d_total", "g_total"} <= set(record)
    assert all(grad is None for grad in at_d_step["g_grads"])
    changed = lambda before, module: [  # noqa: E731
        not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True)
    ]
    assert all(changed(g_before, g.module_))
    assert all(changed(d_before, d.module_))
    # Only opt_g stepped in the generator's half: D kept its post-D-step weights.
    assert not any(changed(at_d_step["d_after"], d.module_))
    assert not any(changed(codec_before, codec.module_))
    # The generator's backward left no gradient behind in D.
    assert all(p.grad is None for p in d.module_.parameters())


def test_gan_step_skips_and_records_a_non_finite_generator_loss(codec, data):
    g = generator_for(codec, "high")
    d = MultiScaleDiscriminator.sized("tiny", device="cpu", random_state=0).initialize()

    class Poisoned(ConchShellLoss):
        def generator(self, **kwargs):
            terms = super().generator(**kwargs)
            terms["total"] = terms["total"] * float("nan")
            return terms

    opt_g = torch.optim.AdamW(g.module_.parameters(), lr=1e-3)
    opt_d = torch.optim.AdamW(d.module_.parameters(), lr=1e-3)
    g_before = [p.detach().clone() for p in g.module_.parameters()]
    record = gan_step(
        g.module_,
        d.module_,
        opt_g,
        opt_d,
        codec,
        Poisoned(**SMALL_MEL),
        data["features"],
        data["categories"],
        data["audio"],
        codec_level("high"),
    )
    assert record["skipped_g"] == "non-finite loss"
    assert "skipped_d" not in record
    assert all(torch.equal(b, p) for b, p in zip(g_before, g.module_.parameters(), strict=True))
