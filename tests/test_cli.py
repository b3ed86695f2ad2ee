"""The command line: entry points and help on every subcommand."""

import subprocess
import sys

import pytest

from conchshell.cli import build_parser, main


def _subcommand_paths(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommand_paths(sub, (*prefix, name))


def test_every_subcommand_has_help(capsys):
    paths = list(_subcommand_paths(build_parser()))
    assert ("data", "build") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0
        assert "usage: conchshell " + " ".join(path) in capsys.readouterr().out


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "conchshell", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("conchshell ")


def test_missing_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_demo_rejects_a_bad_setting_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["demo", "--data", str(tmp_path / "data"), "--out", str(out), "--size", "tiny"]
    assert main([*args, "--preset", "conchshell", "--set", "generator__guidance=-1"]) == 2
    assert "--set: guidance must be a finite number >= 0, got -1" in capsys.readouterr().err
    assert main([*args, "--set", "nonsense"]) == 2
    assert "--set takes key=value, got 'nonsense'" in capsys.readouterr().err
    assert main([*args, "--set", "generator__continue_prob=2"]) == 2
    assert "--set: continue_prob must be in [0, 1], got 2" in capsys.readouterr().err
    assert not out.exists()


def test_the_preset_names_are_the_presets():
    from conchshell import presets
    from conchshell.cli import PRESET_NAMES

    assert set(PRESET_NAMES) == set(presets.PRESETS)
