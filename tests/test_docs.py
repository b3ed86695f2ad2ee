"""The documentation: the site builds strictly, the examples run, every public name is documented.

- ``mkdocs build --strict`` into a temporary folder, and its CLI page covers every subcommand;
- every notebook under ``examples/`` is committed without outputs and executes at the tiny size
  (``CONCHSHELL_EXAMPLE_SIZE=tiny``) with nbclient, on a kernel that runs this interpreter
  (so no ``ipykernel install`` step is needed on a fresh machine);
- ``examples/quickstart.py --size tiny`` runs;
- every ```python block of README.md runs, in order, in one namespace, in a temporary working
  folder that holds (a link to) the stand-in dataset at ``data/standin``, as after ``make demo``;
- every public class and function (conchshell's lazy exports and each public module's
  ``__all__``) has a docstring, with a numpy-style Parameters section where it takes arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


# ----------------------------------------------------------------------------- the site
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    return out


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_site_builds_strictly_with_every_page(site):
    nav_pages = re.findall(r":\s*([\w/-]+)\.md\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert len(nav_pages) >= 15
    for page in nav_pages:
        target = site / ("" if page == "index" else page) / "index.html"
        assert target.is_file(), f"{page}.md was not rendered"
    # mkdocstrings rendered the API, e.g. the estimator's methods.
    api = (site / "api" / "estimator" / "index.html").read_text()
    assert "predict_latents" in api and "generate_files" in api


def test_cli_reference_covers_every_subcommand(site):
    from conchshell.cli import build_parser

    page = (site / "cli" / "index.html").read_text()
    commands = list(_commands(build_parser()))
    assert len(commands) > 5
    for path in commands:
        name = " ".join(("conchshell", *path))
        assert f"<code>{name}</code>" in page, f"{name} is missing from the CLI reference"
        assert f"usage: {name}" in page


# ------------------------------------------------------------------------ the notebooks
def test_there_are_examples():
    assert (EXAMPLES / "quickstart.py").is_file()
    assert {p.name for p in NOTEBOOKS} >= {"swap_components.ipynb", "own_pairs.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.fixture
def venv_kernel(tmp_path, monkeypatch) -> str:
    """A kernel spec that launches this interpreter, first on the Jupyter path.

    ipykernel's own ``python3`` spec in ``sys.prefix`` would do, but a user-level spec of the
    same name (``~/.local/share/jupyter``) comes first and may launch another Python.
    """
    import json

    spec = tmp_path / "jupyter" / "kernels" / "conchshell-venv"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "conchshell venv", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "conchshell-venv"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_at_tiny_size(path, tmp_path, monkeypatch, venv_kernel):
    import nbformat
    from nbclient import NotebookClient

    # The kernel inherits the environment: tiny size, one thread (the test models are tiny).
    monkeypatch.setenv("CONCHSHELL_EXAMPLE_SIZE", "tiny")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name=venv_kernel, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "stream" and o.name == "stdout" for o in outputs)


@pytest.mark.slow
def test_quickstart_runs_at_tiny_size(tmp_path):
    sys.path.insert(0, str(EXAMPLES))
    try:
        quickstart = importlib.import_module("quickstart")
    finally:
        sys.path.remove(str(EXAMPLES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = quickstart.main(["--size", "tiny", "--out", str(tmp_path / "qs")])
    assert (out / "model" / "params.json").is_file()
    assert sorted(p.suffix for p in (out / "music").iterdir()) == [".png", ".png", ".wav", ".wav"]


# --------------------------------------------------------------------------- the README
def _readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


@pytest.fixture
def standin_workdir(tmp_path, monkeypatch) -> Path:
    """A working folder where ``data/standin`` is the stand-in dataset, as after make demo."""
    (tmp_path / "data").mkdir()
    built = ROOT / "data" / "standin"
    if (built / "Label" / "Label.xlsx").is_file():
        (tmp_path / "data" / "standin").symlink_to(built, target_is_directory=True)
    else:
        from conchshell.data.build import build_standin

        build_standin(tmp_path / "data" / "standin", seed=0)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_runnable_examples_and_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.search(r"```\w*\n(.*?)```", text, re.S).group(1)
    assert "make demo" in first_block and "make test" in first_block
    assert len(_readme_blocks()) >= 5


@pytest.mark.slow
def test_readme_python_blocks_run_in_order(standin_workdir):
    namespace: dict[str, object] = {"__name__": "__readme__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for i, block in enumerate(_readme_blocks(), start=1):
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    assert (standin_workdir / "models" / "tiny" / "params.json").is_file()
    assert (standin_workdir / "music" / "ocean000.wav").is_file()


# ------------------------------------------------------------------------ the docstrings
_SECTION = r"^\s*{}\s*\n\s*-{{3,}}\s*$"
_PARAMETERS = re.compile(_SECTION.format("Parameters"), re.M)
_ATTRIBUTES = re.compile(_SECTION.format("Attributes"), re.M)


def _public_modules() -> list[str]:
    import conchshell

    names = ["conchshell"]
    for info in pkgutil.walk_packages(conchshell.__path__, "conchshell."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def _public_objects() -> dict[str, object]:
    """Every public callable, keyed by where it is defined (so re-exports count once)."""
    import conchshell

    found: dict[str, object] = {}

    def add(obj: object) -> None:
        if inspect.isclass(obj) or inspect.isfunction(obj):
            found.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)

    for name in conchshell.__all__:
        if not name.startswith("_"):
            add(getattr(conchshell, name))
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            add(getattr(module, name))
    return found


def _takes_arguments(func: object) -> bool:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    return any(p.name not in ("self", "cls") for p in signature.parameters.values())


def _problem(func: object) -> str | None:
    doc = inspect.getdoc(func) or ""
    if not doc.strip():
        return "no docstring"
    if _takes_arguments(func) and not _PARAMETERS.search(doc):
        return "no Parameters section"
    return None


def docstring_problems() -> dict[str, str]:
    """``{qualified name: problem}`` for every undocumented public class, function or method."""
    problems: dict[str, str] = {}
    for qual, obj in _public_objects().items():
        if inspect.isfunction(obj):
            if (problem := _problem(obj)) is not None:
                problems[qual] = problem
            continue
        doc = inspect.getdoc(obj) or ""
        init = obj.__dict__.get("__init__")
        if not doc.strip():
            problems[qual] = "no docstring"
        elif init is not None and _takes_arguments(init):
            documented = _PARAMETERS.search(doc) or _PARAMETERS.search(inspect.getdoc(init) or "")
            # A dataclass's fields are its arguments; numpydoc lists them as Attributes.
            if dataclasses.is_dataclass(obj) and _ATTRIBUTES.search(doc):
                documented = True
            if not documented:
                problems[qual] = "no Parameters section"
        for name, member in vars(obj).items():
            if name.startswith("_"):
                continue
            if isinstance(member, property):
                if not (member.__doc__ or "").strip():
                    problems[f"{qual}.{name}"] = "no docstring"
                continue
            func = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
            if inspect.isfunction(func) and (problem := _problem(func)) is not None:
                problems[f"{qual}.{name}"] = problem
    return problems


# Public names documented without a Parameters section (or without a docstring). Every gap
# listed when this test was written has been closed; no name may join.
KNOWN_GAPS: frozenset[str] = frozenset()


def test_every_public_callable_is_documented():
    problems = docstring_problems()
    assert len(_public_objects()) > 100
    new = {k: v for k, v in problems.items() if k not in KNOWN_GAPS}
    assert not new, "public names without a proper docstring:\n" + "\n".join(
        f"  {k}: {v}" for k, v in sorted(new.items())
    )
    fixed = sorted(KNOWN_GAPS - set(problems))
    if fixed:
        warnings.warn(f"documented now, delete from KNOWN_GAPS: {fixed}", stacklevel=1)


# ------------------------------------------------------------------ Table 1 in the docs
def _documented_table1() -> dict[str, tuple[int, int]]:
    text = (ROOT / "docs" / "presets.md").read_text()
    rows = re.findall(
        r"^\| ([\w-]+(?: \(T = \d+\))?|VGG-16 features) \| ([\d,]+) \| ([\d,]+) \|", text, re.M
    )
    return {name: (int(p.replace(",", "")), int(m.replace(",", ""))) for name, p, m in rows}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:VGGEncoder:UserWarning")
def test_presets_page_shows_what_profile_measures():
    """The measured columns of docs/presets.md, re-measured (on the meta device: shapes only)."""
    import torch
    from torch import nn

    from conchshell.gan.discriminator import MultiScaleDiscriminator
    from conchshell.gan.generator import Generator
    from conchshell.image.tcnn import TCNNEncoder
    from conchshell.image.vgg import VGGEncoder
    from conchshell.profile import profile

    table = _documented_table1()
    assert len(table) == 9
    image = torch.zeros(1, 3, 224, 224, device="meta")
    for name, n_blocks in (("TCNN-6", 6), ("TCNN-18", 18)):
        module = TCNNEncoder(n_blocks=n_blocks, device="cpu").initialize().module_.to("meta")
        p = profile(module, image)
        assert (p.params, p.macs) == table[name]
    vgg = VGGEncoder(device="cpu").initialize().module_.to("meta")
    p = profile(vgg, image)
    assert (p.params, p.macs) == table["VGG-16 features"]
    disc = MultiScaleDiscriminator(device="cpu").initialize().module_.to("meta")
    for level, frames in (("High", 1000), ("Low", 4000), ("Deep", 16000)):
        p = profile(disc, torch.zeros(1, 1, 64 * frames, device="meta"))
        assert (p.params, p.macs) == table[f"D-{level} (T = {frames})"]
    inputs = torch.zeros(1, 2048, device="meta"), torch.tensor([0], device="meta")
    for level in ("High", "Low", "Deep"):
        module = Generator(level.lower(), device="cpu").initialize().module_.to("meta")
        p = profile(module, *inputs, exclude=(nn.Embedding,))
        assert (p.params, p.macs) == table[f"G-{level}"]
