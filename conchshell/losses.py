"""ConchShell's losses, importable as ``conchshell.losses``.

The definitions live in :mod:`conchshell.gan.losses`; see there.
"""

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

__all__ = [
    "LOSS_TERMS",
    "ConchShellLoss",
    "code_l1_loss",
    "discriminator_hinge_loss",
    "feature_matching_loss",
    "generator_hinge_loss",
    "latent_l1_loss",
    "log_mel",
    "mel_l1_loss",
    "waveform_l1_loss",
]
