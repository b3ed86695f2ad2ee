"""Table 1 and Table 2 reports: figures, files, columns and the command line."""

import csv
import io

import numpy as np
import pytest
import soundfile as sf
from helpers_data import write_label
from PIL import Image

from conchshell import presets
from conchshell.cli import main
from conchshell.datasets import load_bop, make_toy_dataset
from conchshell.estimator import ImageToMusic
from conchshell.reports import PAPER_TABLE1, PAPER_TABLE2, Report, paper_model_of, table1, table2

pytestmark = [
    pytest.mark.filterwarnings("ignore:I3DExtractor has no weights:UserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
    # librosa, on clips with silent stretches
    pytest.mark.filterwarnings("ignore:Trying to estimate tuning:UserWarning"),
]


# ------------------------------------------------------------------ Table 1
@pytest.fixture(scope="module")
def paper_table1():
    return table1("paper")


def _row(report, preset, part):
    (row,) = [r for r in report.rows if r["preset"] == preset and r["part"] == part]
    return row


def test_table1_reproduces_the_paper_within_half_a_percent(paper_table1):
    assert paper_table1.meta["seconds"] < 30  # built on the meta device
    checked = 0
    for row in paper_table1.rows:
        if row["paper_model"] is None or row["paper_module"] == "G-Deep":
            continue
        assert row["params"] == pytest.approx(row["paper_params"], rel=5e-3), row["module"]
        assert row["macs"] == pytest.approx(row["paper_macs"], rel=5e-3), row["module"]
        checked += 1
    assert checked == 10  # 4 presets x 3 parts, less the two G-Deep rows


def test_table1_exact_figures(paper_table1):
    d = _row(paper_table1, "conchshell", "discriminator")
    assert (d["module"], d["params"]) == ("D-Deep", 9_212_358)
    assert _row(paper_table1, "baseline_1", "generator")["params"] == 33_108_800
    assert _row(paper_table1, "baseline_2", "generator")["params"] == 65_182_528
    assert _row(paper_table1, "conchshell", "image")["params"] == 2_284_686
    assert _row(paper_table1, "conchshell", "image")["macs"] == 827_507_200
    # G-Deep is the authors' code, not the paper's 100.420M / 59.197G: shown as a gap.
    g = _row(paper_table1, "conchshell", "generator")
    assert g["params"] == 78_298_528
    assert g["macs"] == pytest.approx(44.453e9, rel=5e-3)
    assert g["params_diff_pct"] == pytest.approx(100 * (78_298_528 / 100.420e6 - 1))
    assert g["module"] == "G-Deep [a]"
    vgg = _row(paper_table1, "vgg_baseline", "image")
    assert (vgg["module"], vgg["params"], vgg["paper_params"]) == ("VGG-16", 14_714_688, None)


def test_table1_markdown_and_csv(paper_table1, tmp_path):
    text = paper_table1.to_markdown()
    assert "| conchshell | ConchShell | D-Deep | 43.950G | 43.950G | 9.212M | 9.212M |" in text
    assert "FLOPs" in text and "multiply-accumulates" in text and "[a] G-Deep" in text
    rows = list(csv.DictReader(io.StringIO(paper_table1.to_csv())))
    assert len(rows) == 15
    assert rows[0]["params"] == "9212358" and rows[0]["paper_params"] == "9212000.0"
    written = paper_table1.save(tmp_path / "out")
    assert sorted(p.name for p in written) == ["table1.csv", "table1.md"]
    assert (tmp_path / "out" / "table1.md").read_text() == text
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes leave nothing behind


def test_table1_tiny_size_and_errors():
    report = table1("tiny", presets=["conchshell", "baseline_1"])
    assert [r["module"] for r in report.rows] == [
        "D-Deep (tiny)", "G-Deep (tiny)", "TCNN-6 (tiny)",
        "D-High (tiny)", "G-High (tiny)", "TCNN-6 (tiny)",
    ]  # fmt: skip
    # The tiny D is MultiScaleDiscriminator.sized("tiny"): 5,636 parameters whatever the level.
    assert report.rows[0]["params"] == report.rows[3]["params"] == 5_636
    assert report.rows[0]["macs"] > report.rows[3]["macs"]  # Deep latents are longer
    assert all(r["macs_diff_pct"] is None for r in report.rows)  # no diff off the paper size
    assert "ΔMACs" not in report.to_markdown()
    with pytest.raises(ValueError, match="size must be one of"):
        table1("huge")
    with pytest.raises(ValueError, match="unknown presets"):
        table1(presets=["nope"])


def test_paper_tables_hold_the_printed_figures():
    assert PAPER_TABLE1["ConchShell"]["generator"] == ("G-Deep", 59.197e9, 100.420e6)
    assert PAPER_TABLE1["Baseline-3"]["image"] == ("TCNN-18", 1.443e9, 7.543e6)
    assert PAPER_TABLE2[("test", "ConchShell")]["pesq"] == 2.9
    assert PAPER_TABLE2[("train", "Baseline-2")]["stoi"] == 0.55
    assert PAPER_TABLE2[("test", "Baseline-3")]["noise"] == "4.0 ± 0.3"


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("conchshell", "ConchShell"),
        ("baseline_1", "Baseline-1"),
        ("baseline_2", "Baseline-2"),
        ("baseline_3", "Baseline-3"),
        ("vgg_baseline", None),
    ],
)
def test_paper_model_of_presets(preset, expected):
    assert paper_model_of(presets.get(preset, "tiny")) == expected


def test_report_renders_missing_values_and_plain_rows():
    report = Report(
        name="t",
        title="T",
        rows=[{"a": 1.23456, "b": None}, {"a": float("nan"), "b": "x"}],
        columns=["a", "b"],
        display=[("a", "A", ".2f"), ("b", "B", None)],
        notes=["n1", "n2"],
    )
    text = report.to_markdown()
    assert "| 1.23 | — |" in text and "| — | x |" in text
    assert report.to_csv().splitlines() == ["a,b", "1.23456,", "nan,x"]


# ------------------------------------------------------------------ Table 2
def _write_bop(root, toy, per_split):
    """A BOP-layout folder from the toy dataset: one picture and one piece per item."""
    rows = []
    names = list(toy.categories)
    cats = np.asarray(toy.category_ids)
    images = toy.stack_images()
    for c, name in enumerate(names):
        folder = f"{name}-{c + 1}"
        for k, i in enumerate(np.flatnonzero(cats == c)):
            split = "train_set" if k < per_split else "val_set"
            stem = f"{name}{k:03d}"
            path = root / "Img" / split / folder / f"{stem}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = images[i] - images[i].amin()
            pixels = (pixels / pixels.amax() * 255).round().byte().permute(1, 2, 0).numpy()
            Image.fromarray(pixels).save(path)
            wav = root / "Wav" / "beach" / f"{stem}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, toy.get_waveform(int(i)).numpy(), 16000)
            rows.append((folder, f"{stem}.npy", "beach", wav.name))
    write_label(root / "Label" / "Label.xlsx", rows)
    write_label(root / "Label" / "Label_small.xlsx", rows)
    return root


@pytest.fixture(scope="module")
def bop_and_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bop")
    toy = make_toy_dataset(n_per_category=3, n_categories=6, n_samples=24000, random_state=1)
    _write_bop(root, toy, per_split=2)
    train = load_bop(root, "train")
    folders = []
    for name in ("conchshell", "baseline_1"):
        model = presets.get(name, "tiny", random_state=0, verbose=0).fit(train)
        folders.append(model.save(tmp_path_factory.mktemp("models") / name))
    return root, folders


@pytest.mark.slow
def test_table2_two_models_two_splits(bop_and_models):
    root, folders = bop_and_models
    report = table2(folders, root, ("train", "val"), max_items=6, references=False)
    labels = [(r["split"], r["model"]) for r in report.rows]
    assert labels == [
        ("train", "conchshell"), ("train", "baseline_1"),
        ("val", "conchshell"), ("val", "baseline_1"),
    ]  # fmt: skip
    by = {(r["split"], r["model"]): r for r in report.rows}
    assert by[("val", "conchshell")]["paper_model"] == "ConchShell"
    assert by[("val", "conchshell")]["paper_pesq"] == 2.9  # the paper's test-set row
    assert by[("train", "conchshell")]["paper_pesq"] == 3.1
    assert by[("train", "baseline_1")]["paper_stoi"] == 0.32
    assert by[("val", "baseline_1")]["paper_noise_mos"] == "1.5 ± 0.2"
    assert by[("train", "conchshell")]["n_items"] == 6
    assert by[("val", "conchshell")]["n_items"] == 6  # one image per category
    for row in report.rows:
        assert 1.0 <= row["pesq"] <= 4.65 or row["pesq_nan"] == 6
        assert 0.0 <= row["stoi"] <= 1.0
        for key in ("relevance_accuracy", "descriptor_agreement", "paired_retrieval"):
            assert 0.0 <= row[key] <= 1.0
        assert row["mrstft"] > 0  # generated, not the reference
    # Music-aware measures always sit beside PESQ and STOI.
    text = report.to_markdown()
    header = next(line for line in text.splitlines() if line.startswith("| split"))
    for column in ("PESQ", "STOI", "relevance acc.", "descriptor agr.", "PESQ (paper)"):
        assert f"| {column} |" in header
    assert "speech measures" in text
    csv_rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert len(csv_rows) == 4
    columns = ["pesq", "stoi", "relevance_accuracy", "paired_retrieval", "mrstft"]
    columns += ["descriptor_agreement", "abs_z_tempo", "paper_pesq", "paper_i2m_mos"]
    assert set(columns) <= set(csv_rows[0])


def test_table2_rejects_bad_arguments(bop_and_models):
    root, folders = bop_and_models
    with pytest.raises(ValueError, match="splits"):
        table2(folders, root, ("test",))
    with pytest.raises(ValueError, match="no models"):
        table2([], root)
    with pytest.raises(ValueError, match="names"):
        table2(folders, root, names=["one"])
    with pytest.raises(FileNotFoundError, match="no conchshell model"):
        table2([root], root)


def test_table2_refuses_a_model_of_other_categories(bop_and_models):
    root, folders = bop_and_models
    model = ImageToMusic.load(folders[0])
    model.categories_ = [f"scene_{i}" for i in range(6)]  # trained on another dataset
    with pytest.raises(ValueError, match="knows the categories"):
        table2([model], root, ("val",), references=False)


def test_cli_report_table1(tmp_path, capsys):
    assert main(["report", "table1", "--size", "tiny", "--out", str(tmp_path / "t1")]) == 0
    out = capsys.readouterr().out
    assert "# Table 1" in out and "D-Deep (tiny)" in out
    assert {p.name for p in (tmp_path / "t1").iterdir()} == {"table1.md", "table1.csv"}


@pytest.mark.slow
def test_cli_report_table2_with_reference_rows(bop_and_models, tmp_path, capsys):
    root, folders = bop_and_models
    argv = ["report", "table2", "--models", str(folders[0]), "--data", str(root)]
    argv += ["--split", "val", "--max-items", "3", "--out", str(tmp_path / "t2")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "# Table 2" in out and "| val | conchshell | ConchShell | 3 |" in out
    files = {p.name for p in (tmp_path / "t2").iterdir()}
    assert files == {"table2.md", "table2.csv", "table2.png"}
    assert (tmp_path / "t2" / "table2.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(io.StringIO((tmp_path / "t2" / "table2.csv").read_text())))
    by = {r["model"]: r for r in rows}
    assert list(by) == [
        "conchshell", "real: same clip", "real: other piece, same category", "white noise"
    ]  # fmt: skip
    # The ceiling: a real clip against itself; the floor: white noise.
    same, noise = by["real: same clip"], by["white noise"]
    assert float(same["pesq"]) == pytest.approx(4.64, abs=0.01)
    assert float(same["stoi"]) == pytest.approx(1.0, abs=1e-6)
    assert float(same["mrstft"]) == pytest.approx(0.0, abs=1e-6)
    assert float(same["relevance_accuracy"]) == 1.0  # toy categories are easy to tell apart
    assert same["paper_model"] == "truth-data" and same["paper_i2m_mos"] == "4.6 ± 0.3"
    assert float(noise["mrstft"]) > float(by["real: other piece, same category"]["mrstft"])
    assert float(noise["stoi"]) < float(same["stoi"])
    # A clear error, not a traceback, for a folder without a model.
    bad = ["report", "table2", "--models", str(tmp_path), "--data", str(root)]
    assert main(bad) == 2
    assert "no conchshell model" in capsys.readouterr().err
