"""The ``conchshell`` command line.

Each subcommand's arguments are declared here; the work is imported only
when the subcommand runs, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from conchshell._version import __version__

# conchshell.presets.PRESETS's keys, here so that --help needs no torch import (a test
# keeps the two the same).
PRESET_NAMES = (
    "conchshell",
    "baseline_1",
    "baseline_2",
    "baseline_3",
    "vgg_baseline",
    "flow",
    "mosaic",
)

__all__ = ["build_parser", "main"]

# conchshell.base.SIZES, spelled out so that --help imports nothing heavy.
_SIZES = ("paper", "small", "tiny")


def _size(value: str) -> str:
    """A --size value; ``cpu``, the earlier name of ``small``, is accepted (as --scale is)."""
    return "small" if value == "cpu" else value


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _cmd_data_build(args: argparse.Namespace) -> int:
    from conchshell.data.build import build_standin

    summary = build_standin(args.out, seed=args.seed, force=args.force)
    print(summary.describe())
    return 0


def _cmd_data_summary(args: argparse.Namespace) -> int:
    from conchshell.datasets import load_bop

    for split in ("train", "val"):
        ds = load_bop(args.root, split=split)
        print(f"{split}: {ds.describe()}")
    return 0


def _parse_value(text: str) -> object:
    """``--set`` values: JSON literals (numbers, booleans, null, lists) or plain strings."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def _parse_sets(items: Sequence[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--set takes key=value, got {item!r}")
        params[key.strip()] = _parse_value(value.strip())
    return params


def _cmd_fit(args: argparse.Namespace) -> int:
    from conchshell import presets
    from conchshell.datasets import load_bop, load_pairs

    model = presets.get(args.preset, args.size)
    try:
        model.set_params(**_parse_sets(args.set))
    except ValueError as exc:
        raise CLIError(f"--set: {exc}") from exc
    if args.out.exists() and any(args.out.iterdir()) and not (args.resume or args.force):
        raise CLIError(f"{args.out} is not empty; pass --resume to continue or --force")
    checkpoints = args.out / "checkpoints"
    if args.force and not args.resume:
        # --force starts afresh: an earlier run's checkpoints would otherwise be refused.
        shutil.rmtree(checkpoints, ignore_errors=True)
    model.set_params(checkpoint_dir=str(checkpoints))
    data = args.data
    dataset = load_pairs(data) if data.suffix.lower() == ".csv" else load_bop(data, "train")
    model.fit(dataset, resume=args.resume)
    model.save(args.out)
    print(f"saved {args.preset} ({args.size}) to {args.out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from conchshell.estimator import ImageToMusic
    from conchshell.generation import expand_images

    for image in args.images:
        if not image.exists():
            raise CLIError(f"image not found: {image}")
    images = expand_images([str(p) for p in args.images])  # a folder gives each of its photos
    if args.midi:
        from conchshell.evaluation.transcription import check_transcriber

        try:
            check_transcriber(midi=True)
        except ImportError as exc:
            raise CLIError(f"--midi: {exc}") from exc
    model = ImageToMusic.load(args.model)
    categories = None if args.category is None else [args.category] * len(images)
    written = model.generate_files(
        images, args.out, categories=categories, overwrite=args.overwrite, midi=args.midi
    )
    for path in written:
        print(path)
        if args.midi:
            print(path.with_suffix(".mid"))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    meta_file = args.model / "params.json"
    if not meta_file.is_file():
        raise CLIError(f"{args.model} holds no conchshell model (no params.json)")
    history_file = args.model / "history.json"
    try:
        meta = json.loads(meta_file.read_text())
        history = json.loads(history_file.read_text()) if history_file.is_file() else []
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CLIError(f"{args.model} holds a damaged model description: {exc}") from exc
    from conchshell.levels import level_name

    print(f"conchshell model, written by version {meta.get('version')}")
    print(f"level: {level_name(meta['level'])}")
    print(f"categories: {', '.join(meta['categories'])}")
    for name, spec in meta["estimator"].get("fitted", {}).items():
        print(f"{name}: {spec['class'].rsplit('.', 1)[-1]}")
    print(f"GAN steps trained: {len(history)}")
    if history:
        last = history[-1]
        terms = {k: v for k, v in last.items() if k.startswith(("g_", "d_"))}
        print("last step: " + ", ".join(f"{k}={v:.4g}" for k, v in terms.items()))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from conchshell.demo import run_demo

    settings = _parse_sets(args.set)
    try:
        index = run_demo(
            args.data,
            args.out,
            minutes=args.minutes,
            seed=args.seed,
            size=args.size,
            train=True if args.train else None,
            model=args.model,
            settings=settings,
            preset=args.preset,
            reuse=args.reuse,
        )
    except ValueError as exc:
        if not settings:
            raise
        raise CLIError(f"--set: {exc}") from exc
    print(f"open {index} to see and hear the results")
    return 0


def _cmd_mos_serve(args: argparse.Namespace) -> int:
    from conchshell.mos import serve

    serve(
        args.samples_dir,
        host=args.host,
        port=args.port,
        db=args.db,
        raters_per_item=args.raters_per_item,
        items_per_rater=args.items_per_rater,
        open_browser=args.open,
        quiet=not args.verbose,
    )
    return 0


def _cmd_mos_summary(args: argparse.Namespace) -> int:
    from conchshell.io import atomic_write
    from conchshell.mos import summary

    result = summary(args.path)
    print(result.to_markdown(args.digits))
    if args.csv is not None:
        with atomic_write(args.csv, "w") as handle:
            handle.write(result.to_csv())
    return 0


def _cmd_report_table1(args: argparse.Namespace) -> int:
    from conchshell.reports import table1

    report = table1(args.size)
    print(report.to_markdown())
    if args.out is not None:
        for path in report.save(args.out):
            print(f"wrote {path}")
    return 0


def _cmd_report_table2(args: argparse.Namespace) -> int:
    from conchshell.reports import table2

    report = table2(args.models, args.data, splits=args.split, max_items=args.max_items, verbose=1)
    print(report.to_markdown())
    if args.out is not None:
        for path in report.save(args.out):
            print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="conchshell",
        description="Turn a picture into an 8-second piano piece (ConchShell).",
    )
    parser.add_argument("--version", action="version", version=f"conchshell {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    data = sub.add_parser("data", help="build or inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data_sub.required = True
    build = data_sub.add_parser(
        "build",
        help="write the offline stand-in dataset (real photos, rendered piano) in the BOP layout",
    )
    build.add_argument("--out", type=Path, required=True, help="output folder")
    build.add_argument("--seed", type=int, default=0, help="seed for splits and excerpts")
    build.add_argument(
        "--force", action="store_true", help="rebuild even if OUT already holds the dataset"
    )
    build.set_defaults(func=_cmd_data_build)
    summary = data_sub.add_parser("summary", help="print the counts of a BOP-layout folder")
    summary.add_argument("root", type=Path, help="dataset folder (BOP layout)")
    summary.set_defaults(func=_cmd_data_summary)

    fit = sub.add_parser("fit", help="train a preset on a dataset and save the model")
    fit.add_argument(
        "--preset",
        default="conchshell",
        help=", ".join(PRESET_NAMES[:-1]) + " or " + PRESET_NAMES[-1],
    )
    fit.add_argument(
        "--size",
        "--scale",
        dest="size",
        type=_size,
        default="small",
        choices=_SIZES,
        help="component sizes: the paper's, small enough for 2 CPU cores, or tiny for tests "
        "(--scale and cpu are the earlier spellings)",
    )
    fit.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a BOP-layout folder, or a CSV of image,audio,category pairs",
    )
    fit.add_argument("--out", type=Path, required=True, help="folder to save the model in")
    fit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set_params key, e.g. max_steps=200 or generator__embed_dim=128",
    )
    fit.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    fit.add_argument("--force", action="store_true", help="train into a non-empty OUT")
    fit.set_defaults(func=_cmd_fit)

    predict = sub.add_parser("predict", help="generate music for images with a saved model")
    predict.add_argument("model", type=Path, help="folder written by 'conchshell fit'")
    predict.add_argument("images", type=Path, nargs="+", help="image files or folders of them")
    predict.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    predict.add_argument(
        "--overwrite", action="store_true", help="replace files that already exist in OUT"
    )
    predict.add_argument(
        "--category",
        default=None,
        help="steer the mood: a category name instead of the predicted one",
    )
    predict.add_argument(
        "--midi",
        action="store_true",
        help="also write NAME.mid beside NAME.wav: the clip's notes (onsets, pitches, "
        "velocities, tempo) transcribed by Basic Pitch, for a DAW; needs the transcription extra",
    )
    predict.set_defaults(func=_cmd_predict)

    info = sub.add_parser("info", help="describe a saved model")
    info.add_argument("model", type=Path, help="folder written by 'conchshell fit'")
    info.set_defaults(func=_cmd_info)

    mos = sub.add_parser("mos", help="the listening test: serve it, summarise its ratings")
    mos_sub = mos.add_subparsers(dest="mos_command", metavar="SUBCOMMAND")
    mos_sub.required = True
    serve = mos_sub.add_parser("serve", help="serve the rating page for a folder of samples")
    serve.add_argument(
        "samples_dir", type=Path, help="SAMPLES_DIR/<model>/<item>.wav beside <item>.png or .jpg"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument(
        "--db", type=Path, default=None, help="SQLite file (default SAMPLES_DIR/mos.sqlite3)"
    )
    serve.add_argument("--raters-per-item", type=int, default=None)
    serve.add_argument("--items-per-rater", type=int, default=None)
    serve.add_argument("--open", action="store_true", help="open the page in a browser")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    serve.set_defaults(func=_cmd_mos_serve)
    msum = mos_sub.add_parser("summary", help="mean +- std per model and metric")
    msum.add_argument("path", type=Path, help="the ratings database or the samples folder")
    msum.add_argument("--digits", type=int, default=2)
    msum.add_argument("--csv", type=Path, default=None, help="also write the table as CSV")
    msum.set_defaults(func=_cmd_mos_summary)

    report = sub.add_parser("report", help="the paper's Table 1 and Table 2 for our models")
    report_sub = report.add_subparsers(dest="report_command", metavar="SUBCOMMAND")
    report_sub.required = True
    t1 = report_sub.add_parser(
        "table1", help="parameters and MACs of every preset's D, G and image module"
    )
    t1.add_argument(
        "--size",
        "--scale",
        dest="size",
        type=_size,
        default="paper",
        choices=_SIZES,
        help="component sizes (--scale and cpu are the earlier spellings)",
    )
    t1.add_argument("--out", type=Path, default=None, help="also write table1.md and .csv here")
    t1.set_defaults(func=_cmd_report_table1)
    t2 = report_sub.add_parser(
        "table2", help="PESQ, STOI and music-aware measures of saved models on a dataset"
    )
    t2.add_argument(
        "--models", type=Path, nargs="+", required=True, help="folders written by 'conchshell fit'"
    )
    t2.add_argument("--data", type=Path, required=True, help="BOP-layout dataset folder")
    t2.add_argument(
        "--split", nargs="+", default=["train", "val"], choices=("train", "val"), help="splits"
    )
    t2.add_argument(
        "--out", type=Path, default=None, help="also write table2.md, .csv and .png here"
    )
    t2.add_argument("--max-items", type=int, default=None, help="images per split, at most")
    t2.set_defaults(func=_cmd_report_table2)

    demo = sub.add_parser(
        "demo", help="the main job: a gallery of the shipped model's music (or train one first)"
    )
    demo.add_argument("--data", type=Path, default=Path("data/standin"), help="dataset folder")
    demo.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    demo.add_argument(
        "--train",
        action="store_true",
        help="train the preset from scratch first instead of using the shipped model",
    )
    demo.add_argument(
        "--model", type=Path, default=None, help="a model folder to use instead of the shipped one"
    )
    demo.add_argument(
        "--minutes", type=float, default=12.0, help="training time budget (with --train)"
    )
    demo.add_argument(
        "--preset",
        default="mosaic",
        choices=PRESET_NAMES,
        help="the preset to train (with --train; the shipped model is mosaic's)",
    )
    demo.add_argument(
        "--reuse",
        type=Path,
        default=None,
        metavar="MODEL",
        help="with --train: use MODEL's encoder, extractor and codec as they are and fit "
        "only the generator",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set_params key for generating, e.g. generator__guidance=2.5 (not saved)",
    )
    demo.add_argument(
        "--size",
        "--scale",
        dest="size",
        type=_size,
        default="small",
        choices=("small", "tiny"),
        help="preset size (tiny: seconds, for smoke tests; --scale and cpu are the earlier "
        "spellings)",
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when ``None``.

    Returns
    -------
    int
        0 on success, 2 when the command fails with a user-facing error (printed to
        stderr), 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (CLIError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split())  # one line, however the cause was formatted
        print(f"conchshell: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("conchshell: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
