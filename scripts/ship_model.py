"""Copy a model trained by ``conchshell demo --train`` into the package, with its provenance.

The shipped model (``conchshell/pretrained/small-deep``) is made by the
project's own command, and this script records how beside it::

    conchshell demo --train --reuse conchshell/pretrained/small-deep --out out/shipped --seed 0
    python scripts/ship_model.py out/shipped --command "conchshell demo --train ..."

It copies ``out/shipped/model`` (``params.json``, ``model.safetensors``,
``history.json``) and writes ``PROVENANCE.json``: the command, the seed, the
commit the training ran at, the stand-in data's content hash, the
generator's and the codec's training histories (the codec's thinned to about 200
records), the demo's ``summary.json``
figures and the SHA-256 of every file. A model trained with ``demo --reuse MODEL``
also carries MODEL's own ``PROVENANCE.json`` under ``reused``, since its encoder
and codec were trained there. It refuses a model bigger than
``--max-mb`` (40 MB: git keeps every version of a committed weights file).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "conchshell" / "pretrained" / "small-deep"
MODEL_FILES = ("params.json", "model.safetensors", "history.json")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def thin(history: list, keep: int = 200) -> list:
    """Every k-th record and the last, at most about ``keep`` (the codec logs every step)."""
    if len(history) <= keep:
        return list(history)
    step = -(-len(history) // keep)
    return history[::step] + ([history[-1]] if (len(history) - 1) % step else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the demo's --out folder (holds model/)")
    parser.add_argument("--command", required=True, help="the command that trained it")
    parser.add_argument("--commit", default=None, help="commit it trained at (default HEAD)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "standin")
    parser.add_argument("--dest", type=Path, default=DEST)
    parser.add_argument("--max-mb", type=float, default=40.0)
    args = parser.parse_args(argv)

    from conchshell.estimator import ImageToMusic

    model_dir = args.run / "model"
    missing = [name for name in MODEL_FILES if not (model_dir / name).is_file()]
    if missing:
        print(f"error: {model_dir} lacks {', '.join(missing)}", file=sys.stderr)
        return 2
    size_mb = sum((model_dir / name).stat().st_size for name in MODEL_FILES) / 1e6
    if size_mb > args.max_mb:
        print(f"error: the model is {size_mb:.1f} MB, over --max-mb {args.max_mb}", file=sys.stderr)
        return 2
    model = ImageToMusic.load(model_dir, device="cpu")  # refuses a damaged folder
    stamp = json.loads((args.data / ".conchshell-standin.json").read_text())
    commit = (
        args.commit
        or subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    summary_path = args.run / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    # A generator fitted on another model's components (demo --reuse) carries that model's
    # provenance: its encoder and codec were trained there.
    reused = (summary or {}).get("reused")
    earlier = Path(reused) / "PROVENANCE.json" if reused else None
    provenance = {
        "command": args.command,
        "seed": model.random_state,
        "commit": commit,
        "shipped": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "data": {"seed": stamp["seed"], "content_hash": stamp["content_hash"]},
        "generator_history": model.generator_.history_,
        # Thinned: the codec's per-step log made the first PROVENANCE.json 1.5 MB.
        "codec_history": thin(getattr(model.codec_, "history_", [])),
        "summary": summary,
        "reused": (
            {"model": reused, "provenance": json.loads(earlier.read_text())}
            if earlier is not None and earlier.is_file()
            else reused
        ),
        "files": {name: sha256(model_dir / name) for name in MODEL_FILES},
        "size_mb": round(size_mb, 2),
    }
    # Written beside the destination and swapped in, so a failure leaves the old model whole.
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ship-", dir=args.dest.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the package folder is for everyone
    for name in MODEL_FILES:
        shutil.copy2(model_dir / name, staging / name)
    (staging / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    old = args.dest.with_name(args.dest.name + ".old")
    if args.dest.exists():
        args.dest.rename(old)
    staging.rename(args.dest)
    shutil.rmtree(old, ignore_errors=True)
    print(f"shipped {size_mb:.1f} MB to {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
