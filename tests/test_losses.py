"""ConchShell's losses: exact values of each term, and the weighted sum as a component."""

import math
import pickle

import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import (
    check_estimator_cloneable,
    check_estimator_repr,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

import conchshell.losses
from conchshell.gan import losses
from conchshell.gan.losses import (
    LOSS_TERMS,
    ConchShellLoss,
    code_l1_loss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
    latent_l1_loss,
    log_mel,
    mel_l1_loss,
    waveform_l1_loss,
)

# Reading a loss with float() while it still carries its graph is what these tests do.
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

SMALL_MEL = dict(n_fft=256, hop_length=64, win_length=256, n_mels=16)


def scales(*logits, features=()):
    """Discriminator-shaped outputs: per scale, feature maps then the logits."""
    return [[*features, torch.tensor(x, dtype=torch.float32)] for x in logits]


def test_discriminator_hinge_loss_exact():
    real = scales([2.0, 0.5], [-1.0, 1.0])
    fake = scales([-2.0, 0.0], [1.0, -0.5])
    # scale 1: real relu(1-[2, .5]) = [0, .5] -> .25; fake relu(1+[-2, 0]) = [0, 1] -> .5
    # scale 2: real relu(1-[-1, 1]) = [2, 0] -> 1;  fake relu(1+[1, -.5]) = [2, .5] -> 1.25
    assert float(discriminator_hinge_loss(real, fake)) == pytest.approx(0.25 + 0.5 + 1 + 1.25)
    # Logits alone work too.
    assert float(discriminator_hinge_loss([s[-1] for s in real], [s[-1] for s in fake])) == (
        pytest.approx(3.0)
    )
    with pytest.raises(ValueError, match="2 real scales but 1 fake"):
        discriminator_hinge_loss(real, fake[:1])
    with pytest.raises(ValueError, match="one entry per discriminator scale"):
        discriminator_hinge_loss(torch.zeros(3), fake)


def test_generator_hinge_loss_exact():
    fake = scales([1.0, 3.0], [-4.0, 0.0], [0.5, 0.5])
    assert float(generator_hinge_loss(fake)) == pytest.approx(-2.0 + 2.0 - 0.5)


def test_feature_matching_weights_and_detaches_real():
    # 2 scales, each n_layers + 3 = 5 outputs (n_layers = 2): weight 4 / 3 / 2.
    real = [[torch.zeros(1, 2, 4, requires_grad=True) for _ in range(5)] for _ in range(2)]
    fake = [
        [torch.full((1, 2, 4), float(j + 1), requires_grad=True) for j in range(5)]
        for _ in range(2)
    ]
    # Layers 0..3 (logits excluded) have L1 1, 2, 3, 4 on each scale.
    expected = 2 * (4 / 3 / 2) * (1 + 2 + 3 + 4)
    value = feature_matching_loss(real, fake)
    assert value.item() == pytest.approx(expected)
    assert feature_matching_loss(real, fake, n_layers=4).item() == pytest.approx(2 * 0.4 * 10)
    value.backward()
    assert all(t.grad is None for scale in real for t in scale)
    assert fake[0][0].grad is not None and fake[0][-1].grad is None
    with pytest.raises(ValueError, match="every layer's output"):
        feature_matching_loss([s[-1] for s in real], fake)


def test_waveform_latent_and_code_l1():
    real, fake = torch.zeros(2, 10), torch.full((2, 1, 10), 0.5, requires_grad=True)
    assert float(waveform_l1_loss(real, fake)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        waveform_l1_loss(torch.zeros(2, 10), torch.zeros(2, 11))
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        waveform_l1_loss(torch.zeros(10), torch.zeros(10))
    pred = torch.ones(2, 3, 4, requires_grad=True)
    target = torch.full((2, 3, 4), 3.0, requires_grad=True)
    assert float(latent_l1_loss(pred, target)) == pytest.approx(2.0)
    code = code_l1_loss(pred, target)
    code.backward()
    assert target.grad is None and pred.grad is not None
    with pytest.raises(ValueError, match="same shape"):
        latent_l1_loss(pred, torch.zeros(2, 3, 5))


def test_mel_l1_loss():
    torch.manual_seed(0)
    t = torch.arange(4000) / 16000
    real = torch.sin(2 * math.pi * 440 * t)[None].repeat(2, 1)
    assert float(mel_l1_loss(real, real.clone())) == 0.0
    fake = (real * 0.5).requires_grad_(True)
    value = mel_l1_loss(real, fake)
    # Halving the amplitude shifts every (unclamped) log10 mel bin by log10(2).
    assert 0.2 < value.item() <= math.log10(2) + 1e-5
    value.backward()
    assert fake.grad.abs().sum() > 0
    # The authors' settings: 128 mels, hop 300; silence stays finite thanks to the floor.
    spec = log_mel(torch.zeros(1, 16000))
    assert spec.shape == (1, 128, 16000 // 300 + 1) and float(spec.min()) == pytest.approx(-5.0)


def test_mel_transform_is_built_once_per_setting():
    losses._mel_transform.cache_clear()
    audio = torch.randn(1, 2048)
    mel_l1_loss(audio, audio, **SMALL_MEL)
    mel_l1_loss(audio, audio * 2, **SMALL_MEL)
    info = losses._mel_transform.cache_info()
    assert info.misses == 1 and info.hits == 3
    mel_l1_loss(audio, audio, **{**SMALL_MEL, "n_mels": 8})
    assert losses._mel_transform.cache_info().misses == 2


def test_conchshell_loss_defaults_are_the_papers():
    params = ConchShellLoss().get_params()
    assert {k: params[k] for k in LOSS_TERMS} == dict(
        adv=0.5, fm=3.0, wave=40.0, mel=15.0, latent=0.0, code=0.0
    )
    assert (params["n_fft"], params["hop_length"], params["win_length"], params["n_mels"]) == (
        2048,
        300,
        1200,
        128,
    )


def batch(requires_grad=True):
    torch.manual_seed(0)
    real = scales([0.5, 1.0], [1.5], features=[torch.zeros(1, 2, 3)] * 3)
    fake_features = [torch.full((1, 2, 3), 0.25, requires_grad=requires_grad)] * 3
    fake = scales([0.2, -0.2], [1.0], features=fake_features)
    return dict(
        fake_outputs=fake,
        real_outputs=real,
        fake_audio=torch.randn(2, 2048, requires_grad=requires_grad),
        real_audio=torch.randn(2, 2048),
        pred_latents=torch.randn(2, 4, 8, requires_grad=requires_grad),
        target_latents=torch.randn(2, 4, 8),
        quantized_target=torch.randn(2, 4, 8),
    )


def test_generator_terms_are_named_like_the_weights_and_summed():
    loss = ConchShellLoss(latent=5.0, code=8.0, **SMALL_MEL)
    terms = loss.generator(**batch())
    assert list(terms) == [*LOSS_TERMS, "total"]
    inputs = batch()
    assert float(terms["adv"]) == pytest.approx(float(generator_hinge_loss(inputs["fake_outputs"])))
    assert float(terms["fm"]) == pytest.approx(
        float(feature_matching_loss(inputs["real_outputs"], inputs["fake_outputs"]))
    )
    assert float(terms["mel"]) == pytest.approx(
        float(mel_l1_loss(inputs["real_audio"], inputs["fake_audio"], **SMALL_MEL))
    )
    weights = loss.weights
    total = sum(weights[k] * float(terms[k]) for k in LOSS_TERMS)
    assert float(terms["total"]) == pytest.approx(total, rel=1e-6)
    # set_params(mel=20) changes the total by exactly 5 more mel terms.
    again = loss.set_params(mel=20.0).generator(**batch())
    assert float(again["mel"]) == pytest.approx(float(terms["mel"]))
    assert float(again["total"]) - float(terms["total"]) == pytest.approx(
        5.0 * float(terms["mel"]), rel=1e-4
    )
    again["total"].backward()


def test_zero_weight_terms_are_skipped_and_missing_inputs_are_errors():
    # Paper weights: latent and code are skipped, so their inputs are not needed.
    inputs = {k: v for k, v in batch().items() if k not in ("pred_latents", "target_latents")}
    inputs.pop("quantized_target")
    terms = ConchShellLoss(**SMALL_MEL).generator(**inputs)
    assert float(terms["latent"]) == 0.0 and float(terms["code"]) == 0.0
    # Adversarial-only training needs no audio at all.
    only_adv = ConchShellLoss(fm=0, wave=0, mel=0).generator(fake_outputs=batch()["fake_outputs"])
    assert float(only_adv["total"]) == pytest.approx(0.5 * float(only_adv["adv"]))
    partial = {k: batch()[k] for k in ("fake_outputs", "real_outputs", "real_audio")}
    with pytest.raises(ValueError, match=r"'wave' term has weight 40\.0 but fake_audio"):
        ConchShellLoss().generator(**partial)
    with pytest.raises(ValueError, match="loss weight mel"):
        ConchShellLoss(mel=-1.0).generator(**batch())
    with pytest.raises(ValueError, match="loss weight adv"):
        ConchShellLoss(adv=float("nan")).generator(**batch())


def test_discriminator_objective():
    inputs = batch()
    terms = ConchShellLoss().discriminator(inputs["real_outputs"], inputs["fake_outputs"])
    assert set(terms) == {"d_hinge", "total"}
    expected = discriminator_hinge_loss(inputs["real_outputs"], inputs["fake_outputs"])
    assert float(terms["total"]) == float(terms["d_hinge"]) == pytest.approx(float(expected))


def test_conchshell_loss_is_an_estimator():
    loss = ConchShellLoss(mel=20.0)
    for check in (
        check_no_attributes_set_in_init,
        check_get_params_invariance,
        check_set_params,
        check_estimator_cloneable,
        check_estimator_repr,
        check_parameters_default_constructible,
    ):
        check("ConchShellLoss", loss)
    assert clone(loss).get_params() == loss.get_params()
    assert pickle.loads(pickle.dumps(loss)).get_params() == loss.get_params()


def test_conchshell_losses_module_reexports():
    for name in conchshell.losses.__all__:
        assert getattr(conchshell.losses, name) is getattr(losses, name)
