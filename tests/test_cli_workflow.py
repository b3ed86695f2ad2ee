"""The command line's happy path: fit a preset on a CSV of pairs, then predict and info."""

import csv

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from conchshell.cli import main


@pytest.fixture
def pairs_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, category in enumerate(["calm", "storm", "calm", "storm"]):
        colour = (40, 90, 200) if category == "calm" else (90, 90, 90)
        image = Image.new("RGB", (64, 48), colour)
        image.save(tmp_path / f"img{i}.png")
        t = np.arange(16000) / 16000
        pitch = 220 if category == "calm" else 660
        wave = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.01 * rng.standard_normal(t.size)
        sf.write(tmp_path / f"clip{i}.wav", wave.astype(np.float32), 16000)
        rows.append({"image": f"img{i}.png", "audio": f"clip{i}.wav", "category": category})
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "audio", "category"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*no weights.*:UserWarning")
def test_fit_predict_info(pairs_csv, tmp_path, capsys):
    model_dir = tmp_path / "model"
    args = ["fit", "--preset", "baseline_1", "--size", "tiny", "--data", str(pairs_csv)]
    args += ["--out", str(model_dir), "--set", "max_steps=2", "--set", "loss__mel=20"]
    assert main(args) == 0
    assert "saved baseline_1 (tiny)" in capsys.readouterr().out
    assert (model_dir / "model.safetensors").is_file()
    assert sorted(p.name for p in (model_dir / "checkpoints").glob("step-*")) == [
        "step-000000001.safetensors",
        "step-000000002.safetensors",
    ]

    out = tmp_path / "music"
    image = str(tmp_path / "img0.png")
    assert main(["predict", str(model_dir), image, "-o", str(out), "--category", "storm"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "img0.wav")
    audio, rate = sf.read(out / "img0.wav")
    assert rate == 16000 and audio.shape == (16000,)

    assert main(["info", str(model_dir)]) == 0
    info = capsys.readouterr().out
    assert "level: high" in info and "categories: calm, storm" in info
    assert "GAN steps trained: 2" in info

    # a non-empty output folder is refused unless resuming
    assert main(args) == 2
    assert "is not empty" in capsys.readouterr().err
