"""Random latent crops in the GAN step (``gan_crop``): what D and the losses see, and resumption."""

import copy
import json
import math

import pytest
import torch

from conchshell import presets
from conchshell.codec.jukebox import JukeboxCodec
from conchshell.datasets import make_toy_dataset
from conchshell.gan.discriminator import MultiScaleDiscriminator
from conchshell.gan.generator import Generator
from conchshell.gan.losses import LOSS_TERMS, ConchShellLoss
from conchshell.gan.training import crop_window, gan_step
from conchshell.levels import level_index
from conchshell.training import finite_everywhere, guarded_step

pytestmark = [
    pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad"),
    pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning"),
]

SAMPLES = 2048
FEATURES = 24
SMALL_MEL = dict(n_fft=128, hop_length=32, win_length=128, n_mels=16)


@pytest.fixture(scope="module")
def codec():
    t = torch.arange(4 * 2048) / 16000
    audio = 0.5 * torch.sin(2 * math.pi * 330 * t).reshape(4, 2048)
    audio = audio + 0.05 * torch.randn(audio.shape, generator=torch.Generator().manual_seed(0))
    trained = JukeboxCodec.sized("tiny", device="cpu", random_state=0, max_steps=3)
    trained.fit(audio.numpy())
    trained.freeze()
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


def networks(codec, level, loss=None):
    g = Generator(
        level,
        in_features=FEATURES,
        emb_width=codec.emb_width,
        n_frames=codec.latent_length(SAMPLES, level),
        size="tiny",
        device="cpu",
        random_state=0,
    ).initialize()
    d = MultiScaleDiscriminator.sized("tiny", device="cpu", random_state=0).initialize()
    opt_g = torch.optim.AdamW(g.module_.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.AdamW(d.module_.parameters(), lr=1e-3, betas=(0.5, 0.999))
    loss = loss if loss is not None else ConchShellLoss(latent=5.0, code=8.0, **SMALL_MEL)
    return g.module_, d.module_, opt_g, opt_d, loss


def step_before_crops(g_model, d_model, opt_g, opt_d, codec, loss, features, cats, audio, level):
    """``gan_step`` as it was before crops (commit cb4272e), written out to pin ``crop=None``."""
    with torch.no_grad():
        real = codec.transform(audio, level=level)
    fake = g_model(features, cats)
    both = d_model(torch.cat([real, fake.detach()]))
    n = real.shape[0]
    d_terms = loss.discriminator(
        [[t[:n] for t in scale] for scale in both], [[t[n:] for t in scale] for scale in both]
    )
    record = {("d_total" if k == "total" else k): float(v.detach()) for k, v in d_terms.items()}
    opt_d.zero_grad(set_to_none=True)
    guarded_step(d_terms["total"], d_model, opt_d, record, "skipped_d")
    assert finite_everywhere(fake)
    fake_out = d_model(fake)
    with torch.no_grad():
        real_out = d_model(real)
        target_q, _ = codec.quantize(real, level=level)
    fake_q, _ = codec.quantize(fake, level=level)
    fake_audio = codec.decode(fake_q, level=level)[..., : audio.shape[-1]]
    g_terms = loss.generator(
        fake_outputs=fake_out,
        real_outputs=real_out,
        fake_audio=fake_audio,
        real_audio=audio,
        pred_latents=fake,
        target_latents=real,
        quantized_target=target_q,
    )
    record.update({f"g_{k}": float(v.detach()) for k, v in g_terms.items()})
    opt_g.zero_grad(set_to_none=True)
    guarded_step(g_terms["total"], g_model, opt_g, record, "skipped_g")
    opt_d.zero_grad(set_to_none=True)
    return record


@pytest.mark.parametrize("level", ["deep", "high"])
def test_no_crop_is_the_step_before_crops_bit_for_bit(codec, data, level):
    g, d, opt_g, opt_d, loss = networks(codec, level)
    twins = copy.deepcopy((g, d))
    opt_g2 = torch.optim.AdamW(twins[0].parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d2 = torch.optim.AdamW(twins[1].parameters(), lr=1e-3, betas=(0.5, 0.999))
    args = (codec, loss, data["features"], data["categories"], data["audio"], level_index(level))
    for _ in range(2):  # the second step runs on the optimisers' state
        new = gan_step(g, d, opt_g, opt_d, *args)
        old = step_before_crops(*twins, opt_g2, opt_d2, *args)
        assert new == old
    for module, twin in zip((g, d), twins, strict=True):
        for (name, a), b in zip(
            module.state_dict().items(), twin.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), name


class Recording(torch.nn.Module):
    """The discriminator, recording the shape of every input."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.shapes = []

    def forward(self, latents):
        self.shapes.append(tuple(latents.shape))
        return self.module(latents)


class Spy(ConchShellLoss):
    """ConchShellLoss that keeps what the generator's terms were given."""

    def generator(self, **kwargs):
        self.seen = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
        return super().generator(**kwargs)


def test_the_discriminator_and_the_losses_see_the_window(codec, data):
    level, crop = "deep", 96
    g, d, opt_g, opt_d, _ = networks(codec, level)
    loss = Spy(latent=5.0, code=8.0, **SMALL_MEL)
    recording = Recording(d)
    offsets = torch.tensor([0, 700])
    with torch.no_grad():
        fake_full = g(data["features"], data["categories"])
    record = gan_step(
        g,
        recording,
        opt_g,
        opt_d,
        codec,
        loss,
        data["features"],
        data["categories"],
        data["audio"],
        level_index(level),
        crop=crop,
        offsets=offsets,
    )
    assert not any(key.startswith("skipped") for key in record)
    emb = codec.emb_width
    assert recording.shapes == [(4, emb, crop), (2, emb, crop), (2, emb, crop)]
    hop = codec.hop_length(level)
    seen = loss.seen
    real_full = codec.transform(data["audio"], level=level)
    for i, o in enumerate(offsets.tolist()):
        # Frame t <-> samples t * hop .. (t + 1) * hop, in the real and the fake halves.
        assert torch.equal(seen["real_audio"][i], data["audio"][i, o * hop : (o + crop) * hop])
        torch.testing.assert_close(seen["target_latents"][i], real_full[i, :, o : o + crop])
        torch.testing.assert_close(seen["pred_latents"][i], fake_full[i, :, o : o + crop])
    assert seen["fake_audio"].shape == (2, crop * hop)
    quantized, _ = codec.quantize(seen["pred_latents"], level=level)
    torch.testing.assert_close(seen["fake_audio"], codec.decode(quantized, level=level))


class SampleCodec:
    """A codec whose latents are the audio itself: frame t holds samples t * hop .. (t + 1) * hop.

    ``decode`` undoes ``transform`` exactly, so decoding a window of real
    latents must give back exactly the audio samples the window covers.
    """

    emb_width = 4

    def hop_length(self, level):
        return self.emb_width

    def latent_length(self, n_samples, level):
        return -(-n_samples // self.emb_width)

    def receptive_field(self, level):
        return self.emb_width

    def transform(self, audio, level):
        return audio.reshape(audio.shape[0], -1, self.emb_width).transpose(1, 2).contiguous()

    def quantize(self, latents, level):
        return latents, torch.zeros(latents.shape[0], latents.shape[2], dtype=torch.long)

    def decode(self, latents, level):
        return latents.transpose(1, 2).reshape(latents.shape[0], -1)


def test_the_audio_window_is_the_one_the_latent_window_decodes_to():
    codec = SampleCodec()
    audio = torch.arange(2 * 64, dtype=torch.float32).reshape(2, 64)
    fake = torch.randn(2, 4, 16, requires_grad=True)
    real, fake_window, window = crop_window(codec, audio, fake, 0, 5, torch.tensor([3, 11]))
    assert torch.equal(codec.decode(real, 0), window)
    assert torch.equal(window[0], audio[0, 12:32]) and torch.equal(window[1], audio[1, 44:64])
    assert torch.equal(fake_window[1], fake[1, :, 11:16].detach())
    fake_window.sum().backward()
    assert fake.grad[:, :, :3].abs().sum() == 0 and fake.grad[0, :, 3:8].eq(1).all()


def test_a_crop_of_the_whole_sequence_is_no_crop(codec, data):
    frames = codec.latent_length(SAMPLES, "high")
    g, d, opt_g, opt_d, loss = networks(codec, "high")
    twins = copy.deepcopy((g, d))
    opt_g2 = torch.optim.AdamW(twins[0].parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d2 = torch.optim.AdamW(twins[1].parameters(), lr=1e-3, betas=(0.5, 0.999))
    args = (codec, loss, data["features"], data["categories"], data["audio"], level_index("high"))
    assert gan_step(g, d, opt_g, opt_d, *args, crop=frames) == gan_step(
        *twins, opt_g2, opt_d2, *args
    )


@pytest.mark.parametrize("term", ["wave", "mel", "adv"])
def test_a_cropped_step_still_trains_the_first_layer(codec, data, term):
    only = {name: 0.0 for name in LOSS_TERMS} | {term: 1.0}
    g, d, opt_g, opt_d, loss = networks(codec, "deep", ConchShellLoss(**only, **SMALL_MEL))
    before = g.linear.weight.detach().clone()
    record = gan_step(
        g,
        d,
        opt_g,
        opt_d,
        codec,
        loss,
        data["features"],
        data["categories"],
        data["audio"],
        level_index("deep"),
        crop=96,
    )
    assert not any(key.startswith("skipped") for key in record) and record[f"g_{term}"] != 0
    grad = g.linear.weight.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0
    assert not torch.equal(before, g.linear.weight)


def test_a_bfloat16_discriminator_step_keeps_float32_weights(codec, data):
    g, d, opt_g, opt_d, loss = networks(codec, "deep")
    args = (codec, loss, data["features"], data["categories"], data["audio"], 0)
    record = gan_step(g, d, opt_g, opt_d, *args, crop=96, precision="bfloat16")
    assert not any(key.startswith("skipped") for key in record)
    assert all(math.isfinite(v) for v in record.values())
    assert all(p.dtype == torch.float32 for p in d.parameters())
    with pytest.raises(ValueError, match="precision must be"):
        gan_step(g, d, opt_g, opt_d, *args, precision="float16")


def test_bad_offsets_are_refused(codec, data):
    fake = torch.zeros(2, codec.emb_width, codec.latent_length(SAMPLES, "deep"))
    with pytest.raises(ValueError, match="offsets must be 2 frames in"):
        crop_window(codec, data["audio"], fake, 0, 96, torch.tensor([0, fake.shape[-1]]))


# ------------------------------------------------------------------ through fit
@pytest.fixture(scope="module")
def toy():
    return make_toy_dataset(n_per_category=1, n_categories=6, n_samples=16000, random_state=0)


def tiny(**params):
    return presets.conchshell("tiny", random_state=0, verbose=0, level="high", **params)


def test_a_cropped_fit_resumes_bit_for_bit(toy, tmp_path):
    full = tiny(max_steps=4, gan_crop=40, checkpoint_dir=tmp_path / "full").fit(toy)
    tiny(max_steps=2, gan_crop=40, checkpoint_dir=tmp_path / "part").fit(toy)
    part = tiny(max_steps=4, gan_crop=40, checkpoint_dir=tmp_path / "part")
    resumed = part.fit(toy, resume=True)

    def losses(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert losses(json.loads(json.dumps(resumed.history_))) == losses(
        json.loads(json.dumps(full.history_))
    )
    for name in ("generator_", "discriminator_"):
        state = getattr(resumed, name).module_.state_dict()
        for key, tensor in getattr(full, name).module_.state_dict().items():
            assert torch.equal(state[key], tensor), key


def test_a_crop_too_short_is_named(toy):
    with pytest.raises(ValueError, match="gan_crop=4 latent frames is too short"):
        tiny(gan_crop=4).initialize()
