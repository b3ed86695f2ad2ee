"""Benchmark: ConchShell inference speed, memory and training-step time, beside MusicGen-small.

Every configuration runs in its own subprocess, so each peak-memory figure
(``ru_maxrss``) belongs to that configuration alone. Models need no training
to be timed: ``presets.conchshell(size, level=...).initialize()`` builds
every component untrained, and the compute is the same as a trained model's.

Printed, in one run:

- the machine's matrix-product peak (fp32 and bf16 4096x4096), before and
  after the other figures;
- ``predict`` latency per 8-s clip and real-time factor (latency / 8 s) for
  Deep, Low and High at the paper and small sizes, plain float32 and through the
  fast path (:func:`conchshell.inference.optimize`), with the model's GFLOP
  per clip and the GFLOP/s achieved;
- throughput at batch 1, 4 and 16 (Deep, fast path);
- the mel-L1 between float32 and bfloat16 audio;
- one GAN training step per preset (small size, and paper-size ConchShell);
- MusicGen-small generating 8 s (``transformers``, built from its
  configuration with random weights; nothing is downloaded).

- each stage of paper-scale Deep predict (TCNN, forging, I3D, generator,
  codebook search, decoder) timed alone, with the GFLOP it runs (torch's
  counter, so the fast path's skipped work is not counted) and its share of
  the matrix-product peak measured in the same process;

Every figure carries the 1-minute load average when it was taken: the
machine may be shared, and a loaded machine gives slower times.

Usage::

    python bench/inference.py --quick    # paper-scale Deep, one image, by stage (< 2 min)
    python bench/inference.py --against REV   # the same, here and at REV, alternating
    python bench/inference.py            # everything (tens of minutes on 2 cores)

The last line of ``--quick`` is ``deep_paper_rtf=<value>``; the full run ends
with ``deep_paper_rtf=<value> peer_speedup=<value>``.
"""

from __future__ import annotations

import os

# Idle OpenMP workers must sleep, not spin, when other jobs share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import resource
import subprocess
import sys
import time
import warnings
from typing import Any

CLIP_SECONDS = 8.0
LEVELS = ("deep", "low", "high")
TRAIN_PRESETS = ("conchshell", "baseline_1", "baseline_2", "baseline_3", "vgg_baseline")
# MusicGen plays 50 token frames per second; 8 s is 400 frames, plus 3 steps for
# its delay pattern (each of the 4 codebooks starts one step after the previous).
MUSICGEN_FRAMES = 403


# ---------------------------------------------------------------- workers
def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _time(fn: Any, reps: int, warm_up: bool = True) -> tuple[float, float]:
    """Best and median wall time of ``reps`` calls, after one warm-up call."""
    if warm_up:
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[0], times[len(times) // 2]


def work_matmul(cfg: dict[str, Any]) -> dict[str, Any]:
    """GFLOP/s of a square matrix product in float32 and bfloat16."""
    import torch

    n = int(cfg.get("n", 4096))
    out: dict[str, Any] = {"load": _load()}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        best, _ = _time(lambda a=a, b=b: a @ b, int(cfg.get("reps", 5)))
        out[f"{name}_gflops"] = round(2 * n**3 / best / 1e9, 1)
    return out


def _model(size: str, level: str) -> Any:
    from conchshell import presets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained I3D: "no weights file"
        return presets.conchshell(
            size, level=level, random_state=0, verbose=0, device="cpu"
        ).initialize()


def _images(n: int, seed: int = 0) -> Any:
    import torch

    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def _model_macs(model: Any) -> dict[str, int]:
    """MACs per clip of each network predict runs (the profile module's convention)."""
    import torch

    from conchshell.profile import count_macs

    image = _images(1)
    with torch.inference_mode():
        maps = model.encoder_.transform(image)
        video = model.forger_.transform(maps)
        feats = model.extractor_.transform(video)
        latents = model.generator_.transform(feats, torch.zeros(1, dtype=torch.long))
    codec = model.codec_
    macs = {
        # One encoder pass gives both the feature maps and the category.
        "encoder": count_macs(model.encoder_.module_, image),
        "extractor": count_macs(model.extractor_.module_, video),
        "generator": count_macs(model.generator_.module_, feats, torch.zeros(1, dtype=torch.long)),
        "decoder": count_macs(codec.module_.decoders[model.level_], latents),
        # Nearest-code search: one (frames x emb_width) @ (emb_width x codes) product.
        "quantize": latents.shape[2] * latents.shape[1] * int(codec.get_params()["l_bins"]),
    }
    macs["total"] = sum(macs.values())
    return macs


def work_predict(cfg: dict[str, Any]) -> dict[str, Any]:
    """Latency of ``predict`` for one configuration."""
    import numpy as np

    from conchshell.inference import optimize

    model = _model(cfg["size"], cfg["level"])
    out: dict[str, Any] = {"rss_after_build_mb": _peak_rss_mb()}
    if cfg.get("macs"):
        out["gmac_per_clip"] = {k: round(v / 1e9, 3) for k, v in _model_macs(model).items()}
    if cfg["mode"] != "plain":
        start = time.perf_counter()
        model = optimize(model, precision=cfg["mode"], copy=False)
        out["optimize_s"] = round(time.perf_counter() - start, 2)
    batch = int(cfg["batch"])
    images = _images(batch)
    cats = np.zeros(batch, dtype=np.int64)
    out["load_before"] = _load()
    best, median = _time(
        lambda: model.predict(images, categories=cats, batch_size=batch), int(cfg["reps"])
    )
    out.update(
        load_after=_load(),
        batch_s=round(best, 4),
        batch_median_s=round(median, 4),
        clip_s=round(best / batch, 4),
        rtf=round(best / batch / CLIP_SECONDS, 5),
        clips_per_s=round(batch / best, 3),
        peak_rss_mb=_peak_rss_mb(),
    )
    return out


def work_quality(cfg: dict[str, Any]) -> dict[str, Any]:
    """Mel-L1 between float32 and bfloat16 audio from the same model and images."""
    from conchshell.inference import optimize
    from conchshell.metrics import mel_l1

    model = _model(cfg["size"], cfg["level"])
    images = _images(2, seed=1)
    plain = model.predict(images, categories=[0, 0])
    fast32 = optimize(model, precision="float32").predict(images, categories=[0, 0])
    bf16 = optimize(model, precision="bfloat16")
    fast16 = bf16.predict(images, categories=[0, 0])

    def codes(m: Any) -> Any:
        latents = m.predict_latents(images, categories=[0, 0])
        return m.codec_.quantize(latents, level=m.level_)[1]

    return {
        "codes_equal_fp32_vs_bf16": round(float((codes(model) == codes(bf16)).float().mean()), 5),
        "mel_l1_fp32_vs_fast_fp32": round(float(mel_l1(plain, fast32)), 5),
        "max_abs_fp32_vs_fast_fp32": float(abs(plain - fast32).max()),
        "mel_l1_fp32_vs_bf16": round(float(mel_l1(plain, fast16)), 5),
        "rel_l2_fp32_vs_bf16": round(
            float(((fast16 - plain) ** 2).sum() ** 0.5 / (plain**2).sum() ** 0.5), 5
        ),
        "load": _load(),
    }


def work_train(cfg: dict[str, Any]) -> dict[str, Any]:
    """Seconds of one GAN step (discriminator and generator updates), batch ``batch``."""
    import torch

    from conchshell import presets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = presets.get(
            cfg["preset"], cfg["size"], random_state=0, verbose=0, device="cpu"
        ).initialize()
    batch = int(cfg.get("batch") or model.batch_size)
    n_feat = int(model.generator_.in_features_)
    gen, disc = model.generator_.module_, model.discriminator_.module_
    gen.train()
    disc.train()
    from conchshell.gan.training import gan_step, make_optimizers

    model.codec_.freeze()
    opt_g, opt_d, _, _ = make_optimizers(
        gen,
        disc,
        **{k: getattr(model, k) for k in ("lr_g", "lr_d", "betas", "weight_decay")},
        lr_step=model.lr_step,
        lr_gamma_g=model.lr_gamma_g,
        lr_gamma_d=model.lr_gamma_d,
    )
    feats = torch.randn(batch, n_feat)
    cats = torch.zeros(batch, dtype=torch.long)
    audio = 0.1 * torch.randn(batch, model._n_samples)

    def step() -> None:
        # The library's own step: the same code fit() runs.
        gan_step(
            gen, disc, opt_g, opt_d, model.codec_, model.loss_, feats, cats, audio, model.level_
        )

    out: dict[str, Any] = {"batch": batch, "load_before": _load()}
    # At the paper size one step is long: time the first (allocations included).
    best, median = _time(step, int(cfg.get("reps", 1)), warm_up=cfg["size"] != "paper")
    out.update(
        step_s=round(best, 3),
        step_median_s=round(median, 3),
        load_after=_load(),
        peak_rss_mb=_peak_rss_mb(),
    )
    return out


def _musicgen_small() -> Any:
    """MusicGen-small's architecture with random weights, from its published sizes."""
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )
    from transformers.models.musicgen.configuration_musicgen import MusicgenDecoderConfig

    text = T5Config(  # t5-base's encoder
        vocab_size=32128,
        d_model=768,
        d_kv=64,
        d_ff=3072,
        num_layers=12,
        num_heads=12,
        feed_forward_proj="relu",
    )
    audio = EncodecConfig(  # EnCodec 32 kHz, 4 codebooks of 2048 at 50 Hz
        sampling_rate=32000,
        audio_channels=1,
        num_filters=64,
        upsampling_ratios=[8, 5, 4, 4],
        codebook_size=2048,
        hidden_size=128,
        num_lstm_layers=2,
        use_causal_conv=False,
        normalize=False,
        norm_type="weight_norm",
        pad_mode="reflect",
        compress=2,
        residual_kernel_size=3,
        kernel_size=7,
        last_kernel_size=7,
        dilation_growth_rate=2,
        num_residual_layers=1,
        codebook_dim=128,
        target_bandwidths=[2.2],
        chunk_length_s=None,
        overlap=None,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        ffn_dim=4096,
        num_codebooks=4,
        max_position_embeddings=2048,
        activation_function="gelu",
        pad_token_id=2048,
        bos_token_id=2048,
        audio_channels=1,
    )
    config = MusicgenConfig(
        text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict()
    )
    return MusicgenForConditionalGeneration(config).eval()


def work_musicgen(cfg: dict[str, Any]) -> dict[str, Any]:
    """Seconds for MusicGen-small to generate 8 s of audio (its released sampling settings)."""
    import logging

    import torch

    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    model = _musicgen_small()
    n_params = sum(p.numel() for p in model.parameters())
    # A 12-token prompt (no tokenizer is downloaded; the ids' values do not change the cost).
    prompt = torch.randint(0, 32000, (1, 12))
    frames = int(cfg.get("frames", MUSICGEN_FRAMES))
    settings = {"do_sample": True, "top_k": 250, "guidance_scale": 3.0}

    def generate() -> Any:
        with torch.inference_mode():
            return model.generate(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=frames,
                **settings,
            )

    out: dict[str, Any] = {"params": n_params, "frames": frames, "load_before": _load()}
    start = time.perf_counter()
    audio = generate()
    seconds = time.perf_counter() - start
    out.update(
        generate_s=round(seconds, 2),
        audio_samples=int(audio.shape[-1]),
        audio_s=round(audio.shape[-1] / 32000, 3),
        load_after=_load(),
        peak_rss_mb=_peak_rss_mb(),
    )
    return out


def _executed_gflop(fn: Any) -> float:
    """GFLOP the call actually runs (torch's counter: 2 per multiply-add of convolutions and
    matrix products), so a fast path that skips work is counted for what it does."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def conv_flop(w, out_shape):
        return 2 * math.prod(out_shape) * w[1] * math.prod(w[2:])

    def prepacked_conv(x, w, *rest, out_shape=None):
        # The fast path's oneDNN convolution (PrepackedConv): torch's counter has no formula.
        return conv_flop(w, out_shape)

    def fused_conv(other, x, w, *rest, out_shape=None):
        # FusedConv with a residual: oneDNN adds into ``other`` (the addition is not counted).
        return conv_flop(w, out_shape)

    mapping = {
        torch.ops.mkldnn._convolution_pointwise: prepacked_conv,
        torch.ops.mkldnn._convolution_pointwise_: fused_conv,
    }
    # Under no_grad, not inference_mode: the counter cannot run weight norm's
    # parametrisations on inference tensors.
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def work_stages(cfg: dict[str, Any]) -> dict[str, Any]:
    """Time, executed GFLOP and GFLOP/s of each stage of ``predict`` for one image.

    The stages are timed one by one (best of ``reps`` after a warm-up), and the
    matrix-product peak is measured in the same process, so each stage's share
    of the peak is read on the same machine state.
    """
    import torch

    from conchshell.inference import optimize

    model = _model(cfg["size"], cfg["level"])
    model_gflop = {k: round(2 * v / 1e9, 2) for k, v in _model_macs(model).items()}
    mode = cfg["mode"]
    if mode != "plain":
        model = optimize(model, precision=mode, copy=False)
    reps = int(cfg.get("reps", 3))
    image = _images(1)
    cats = torch.zeros(1, dtype=torch.long)
    level = model.level_
    noise = model.generator_.sample_noise(1, 0)
    state: dict[str, Any] = {}

    def encoder() -> None:
        state["maps"] = model.encoder_.transform_predict(image)[0]

    def forger() -> None:
        state["video"] = model.forger_.transform(state["maps"])

    def extractor() -> None:
        state["feats"] = model.extractor_.transform(state["video"])

    def generator() -> None:
        args = (state["feats"], cats) if noise is None else (state["feats"], cats, noise)
        state["latents"] = model.generator_.transform(*args).float()

    def quantize() -> None:
        state["codes"] = model.codec_.quantize(state["latents"], level=level)[0]

    def decoder() -> None:
        model.codec_.decode(state["codes"], level=level)

    stages = {
        "encoder": encoder,
        "forger": forger,
        "extractor": extractor,
        "generator": generator,
        "quantize": quantize,
        "decoder": decoder,
    }
    # The fast path computes these in bfloat16; the encoder and the code search stay float32.
    low = {"extractor", "generator", "decoder"} if mode == "bfloat16" else set()
    peak = work_matmul({"reps": 3})
    out: dict[str, Any] = {"load_before": _load(), "peak": peak, "stages": {}}
    total = 0.0
    for name, fn in stages.items():
        gflop = _executed_gflop(fn)
        with torch.inference_mode():
            best, _ = _time(fn, reps)
        total += best
        dtype = "bf16" if name in low else "fp32"
        rate = gflop / best if best > 0 else None
        out["stages"][name] = {
            "ms": round(1000 * best, 1),
            "gflop": round(gflop, 2),
            "model_gflop": model_gflop.get(name),
            "gflops": round(rate, 1) if rate else None,
            "dtype": dtype,
            "of_peak": round(rate / peak[f"{dtype}_gflops"], 3) if rate else None,
        }
    out.update(total_ms=round(1000 * total, 1), load_after=_load(), peak_rss_mb=_peak_rss_mb())
    return out


def work_kernels(cfg: dict[str, Any]) -> dict[str, Any]:
    """One fast-path predict under ``ONEDNN_VERBOSE=1`` (set by the caller): the parent
    reads which oneDNN kernels ran, and for how long, from this process's output."""
    import numpy as np

    from conchshell.inference import optimize

    model = optimize(_model(cfg["size"], cfg["level"]), precision=cfg["mode"], copy=False)
    images, cats = _images(1), np.zeros(1, dtype=np.int64)
    model.predict(images, categories=cats)  # oneDNN picks and caches its kernels
    print("KERNELS-BEGIN", flush=True)
    model.predict(images, categories=cats)
    print("KERNELS-END", flush=True)
    return {"load": _load()}


def _onednn_kernels(stdout: str) -> dict[str, Any]:
    """Milliseconds per (primitive, implementation) between the worker's markers, and the ISA."""
    totals: dict[str, float] = {}
    isa, inside = None, False
    for line in stdout.splitlines():
        if line.startswith("KERNELS-"):
            inside = line == "KERNELS-BEGIN"
        elif line.startswith("onednn_verbose") and ",info,cpu,isa:" in line:
            isa = line.split("isa:", 1)[1]
        elif inside and line.startswith("onednn_verbose") and ",primitive,exec,cpu," in line:
            fields = line.split(",")
            key = f"{fields[5]} {fields[6]} ({fields[8].split(' ')[0].split(':')[1]})"
            totals[key] = totals.get(key, 0.0) + float(fields[-1])
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return {"isa": isa, "kernels_ms": {k: round(v, 1) for k, v in ranked}}


WORKERS = {
    "kernels": work_kernels,
    "stages": work_stages,
    "matmul": work_matmul,
    "predict": work_predict,
    "quality": work_quality,
    "train": work_train,
    "musicgen": work_musicgen,
}


# ------------------------------------------------------------ orchestration
def run(
    cfg: dict[str, Any], threads: int, timeout: float, tree: str | None = None
) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter; its result, or an error.

    ``tree``: a checkout whose ``conchshell`` the worker imports instead of this one's
    (``--against``); the worker's code is this file's either way.
    """
    cmd = [sys.executable, __file__, "--worker", json.dumps(cfg), "--threads", str(threads)]
    env = dict(os.environ)
    if cfg["kind"] == "kernels":
        env["ONEDNN_VERBOSE"] = "1"
    if tree is not None:
        # Ahead of site-packages, so ahead of the editable install's path finder.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [tree, env.get("PYTHONPATH")]))
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**cfg, "error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            if cfg["kind"] == "kernels":
                result.update(_onednn_kernels(proc.stdout))
            return {**cfg, **result, "wall_s": round(time.perf_counter() - start, 1)}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**cfg, "error": f"exit {proc.returncode}: {' | '.join(tail)}"}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str]]) -> str:
    cells = [[title for title, _ in cols]]
    for row in rows:
        cells.append(
            [row.get("error", "") if key == "error" else _fmt(row.get(key)) for _, key in cols]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _print_kernels(result: dict[str, Any]) -> None:
    """The oneDNN kernels one fast-path predict ran, longest first."""
    if "error" in result:
        print(f"kernels: {result['error']}")
        return
    print(f"\n## oneDNN kernels of one predict (ONEDNN_VERBOSE; ISA: {result.get('isa')})")
    for key, ms in list(result.get("kernels_ms", {}).items())[:12]:
        print(f"{ms:9.1f} ms  {key}")


def _print_stages(result: dict[str, Any]) -> None:
    """The per-stage table of a ``stages`` result, with the peak it was read against."""
    if "error" in result:
        print(f"stages: {result['error']}")
        return
    peak = result["peak"]
    print(
        f"\n## {result['size']}-size Deep predict by stage ({result['mode']}, one image; peak "
        f"in the same process: fp32 {peak['fp32_gflops']}, bf16 {peak['bf16_gflops']} GFLOP/s)"
    )
    rows = [{"stage": name, **row} for name, row in result["stages"].items()]
    rows.append({"stage": "total", "ms": result["total_ms"]})
    print(
        _table(
            rows,
            [
                ("stage", "stage"),
                ("ms", "ms"),
                ("GFLOP run", "gflop"),
                ("GFLOP model", "model_gflop"),
                ("GFLOP/s", "gflops"),
                ("dtype", "dtype"),
                ("of peak", "of_peak"),
            ],
        )
    )
    print(f"load {result['load_before']} -> {result['load_after']}")


def _against(args: argparse.Namespace, go: Any, cfg: dict[str, Any]) -> int:
    """Time ``cfg`` here and at ``args.against``, alternating; print both and the ratio."""
    import shutil
    import tempfile

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", "-C", here, *cmd], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"git {' '.join(cmd)} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    sha = git("rev-parse", "--verify", f"{args.against}^{{commit}}")
    head = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    tree = tempfile.mkdtemp(prefix="conchshell-against-")
    git("worktree", "add", "--detach", tree, sha)
    runs: dict[str, list[dict[str, Any]]] = {"here": [], "against": []}
    try:
        for _ in range(max(1, int(args.rounds))):
            for name, where in (("here", None), ("against", tree)):
                result = go({**cfg, "tree": name}, tree=where)
                if "error" in result:
                    return 1
                runs[name].append(result)
    finally:
        git("worktree", "remove", "--force", tree)
        shutil.rmtree(tree, ignore_errors=True)
    best = {name: [r["clip_s"] for r in rs] for name, rs in runs.items()}
    rss = {name: [r["peak_rss_mb"] for r in rs] for name, rs in runs.items()}
    here_s, there_s = min(best["here"]), min(best["against"])
    print(
        f"\n## {cfg['size']}-size Deep, optimize(bfloat16), batch 1: best of {len(best['here'])} "
        f"alternating runs\nhere    {head[:10]}{' + changes' if dirty else ''}: {here_s:.4f} s "
        f"per clip ({', '.join(f'{v:.3f}' for v in best['here'])})\n"
        f"against {sha[:10]}: {there_s:.4f} s per clip "
        f"({', '.join(f'{v:.3f}' for v in best['against'])})"
    )
    # Each run is its own process, so each peak RSS is that run's alone.
    print(
        f"peak RSS MB: here {', '.join(f'{v:.0f}' for v in rss['here'])}; "
        f"against {', '.join(f'{v:.0f}' for v in rss['against'])}"
    )
    print(f"speedup_vs_against={there_s / here_s:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="paper-scale Deep, one image, no peer")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions at paper scale")
    parser.add_argument("--no-peer", action="store_true", help="skip MusicGen-small")
    parser.add_argument("--no-train", action="store_true", help="skip the training steps")
    parser.add_argument("--json", help="also write every result to this JSON file")
    parser.add_argument(
        "--against",
        metavar="REV",
        help="time paper-scale Deep predict here and at git revision REV, alternating, "
        "in one run (a regression guard; REV is checked out in a temporary worktree)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternations with --against (default 3)"
    )
    parser.add_argument(
        "--kernels",
        action="store_true",
        help="with --quick: which oneDNN kernels (ISA, implementation) predict runs",
    )
    parser.add_argument(
        "--size",
        default="paper",
        choices=("paper", "small", "tiny"),
        help="model size of --quick and --against (default paper; tiny checks the bench)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.worker:
        cfg = json.loads(args.worker)
        torch.set_num_interop_threads(1)
        result = WORKERS[cfg["kind"]](cfg)
        import conchshell

        result["conchshell_from"] = os.path.dirname(os.path.dirname(conchshell.__file__))
        print("RESULT " + json.dumps(result))
        return 0

    print(
        f"# torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()}",
        flush=True,
    )
    results: list[dict[str, Any]] = []

    def go(cfg: dict[str, Any], timeout: float = 1200, tree: str | None = None) -> dict[str, Any]:
        result = run(cfg, args.threads, timeout, tree)
        results.append(result)
        shown = {k: v for k, v in result.items() if not k.startswith("_")}
        print(json.dumps(shown), flush=True)
        return result

    quick_cfg = {
        "kind": "predict",
        "size": args.size,
        "level": "deep",
        "mode": "bfloat16",
        "batch": 1,
        "reps": 2,
    }
    if args.against:
        return _against(args, go, quick_cfg)
    if args.quick:
        quick = go(quick_cfg, timeout=600)
        stages = go({"kind": "stages", "size": args.size, "level": "deep", "mode": "bfloat16"})
        _print_stages(stages)
        if args.kernels:
            _print_kernels(go({**quick_cfg, "kind": "kernels"}))
        print(f"deep_paper_rtf={_fmt(quick.get('rtf'), 4)}")
        return 0 if "error" not in quick else 1

    peak0 = go({"kind": "matmul"})
    stages = go({"kind": "stages", "size": "paper", "level": "deep", "mode": "bfloat16"})
    predict_rows = []
    for size in ("paper", "small"):
        reps = args.reps if size == "paper" else max(3, args.reps)
        for level in LEVELS:
            for mode in ("float32",) if size == "paper" and level == "deep" else ():
                predict_rows.append(
                    go(
                        {
                            "kind": "predict",
                            "size": size,
                            "level": level,
                            "mode": mode,
                            "batch": 1,
                            "reps": reps,
                        }
                    )
                )
            predict_rows.append(
                go(
                    {
                        "kind": "predict",
                        "size": size,
                        "level": level,
                        "mode": "plain",
                        "batch": 1,
                        "reps": reps,
                        "macs": True,
                    }
                )
            )
            predict_rows.append(
                go(
                    {
                        "kind": "predict",
                        "size": size,
                        "level": level,
                        "mode": "bfloat16",
                        "batch": 1,
                        "reps": reps,
                    }
                )
            )
    batch_rows = []
    for size in ("paper", "small"):
        for batch in (4, 16):
            reps = 1 if size == "paper" else 3
            batch_rows.append(
                go(
                    {
                        "kind": "predict",
                        "size": size,
                        "level": "deep",
                        "mode": "bfloat16",
                        "batch": batch,
                        "reps": reps,
                    }
                )
            )
    quality = go({"kind": "quality", "size": "paper", "level": "deep"})
    train_rows = []
    if not args.no_train:
        for preset in TRAIN_PRESETS:
            train_rows.append(go({"kind": "train", "preset": preset, "size": "small", "reps": 1}))
        train_rows.append(
            go({"kind": "train", "preset": "conchshell", "size": "paper", "batch": 2, "reps": 1})
        )
    peer = None if args.no_peer else go({"kind": "musicgen"}, timeout=3600)
    peak1 = go({"kind": "matmul"})

    # --------------------------------------------------------------- report
    macs = {
        (r["size"], r["level"]): r.get("gmac_per_clip", {}).get("total")
        for r in predict_rows
        if r.get("mode") == "plain"
    }
    # The better of the two peak measurements: the load may change during the run.
    fp32_peak = max(p.get("fp32_gflops", 0) for p in (peak0, peak1)) or None
    bf16_peak = max(p.get("bf16_gflops", 0) for p in (peak0, peak1)) or None
    peak = {"float32": fp32_peak, "plain": fp32_peak, "bfloat16": bf16_peak}
    for row in predict_rows + batch_rows:
        gmac = macs.get((row["size"], row["level"]))
        if gmac and row.get("clip_s"):
            row["gflops"] = round(2 * gmac / row["clip_s"], 1)
            if peak.get(row["mode"]):
                row["of_peak"] = round(row["gflops"] / peak[row["mode"]], 3)
        row["gflop_clip"] = round(2 * gmac, 1) if gmac else None

    print("\n## matrix-product peak (GFLOP/s, 4096^2)")
    print(
        _table(
            [peak0, peak1],
            [
                ("fp32", "fp32_gflops"),
                ("bf16", "bf16_gflops"),
                ("load", "load"),
                ("error", "error"),
            ],
        )
    )
    cols = [
        ("size", "size"),
        ("level", "level"),
        ("path", "mode"),
        ("batch", "batch"),
        ("s/clip", "clip_s"),
        ("RTF", "rtf"),
        ("clips/s", "clips_per_s"),
        ("GFLOP/clip", "gflop_clip"),
        ("GFLOP/s", "gflops"),
        ("of peak", "of_peak"),
        ("peak RSS MB", "peak_rss_mb"),
        ("load", "load_after"),
        ("error", "error"),
    ]
    _print_stages(stages)
    print("\n## predict, one 8-s clip per image (path: plain float32, or optimize(precision))")
    print(_table(predict_rows, cols))
    print("\n## throughput (Deep, optimize(bfloat16))")
    print(
        _table(
            [r for r in predict_rows if r.get("level") == "deep" and r.get("mode") == "bfloat16"]
            + batch_rows,
            cols,
        )
    )
    print("\n## float32 vs bfloat16 audio (paper-scale Deep, untrained)")
    print(json.dumps({k: v for k, v in quality.items() if k != "kind"}))
    if train_rows:
        print("\n## one GAN training step (discriminator + generator update)")
        print(
            _table(
                train_rows,
                [
                    ("preset", "preset"),
                    ("size", "size"),
                    ("batch", "batch"),
                    ("s/step", "step_s"),
                    ("peak RSS MB", "peak_rss_mb"),
                    ("load", "load_after"),
                    ("error", "error"),
                ],
            )
        )
    deep = next(
        (
            r
            for r in predict_rows
            if r.get("size") == "paper"
            and r.get("level") == "deep"
            and r.get("mode") == "bfloat16"
            and "rtf" in r
        ),
        {},
    )
    speedup = None
    if peer is not None:
        print("\n## MusicGen-small (random weights), 8 s")
        print(json.dumps({k: v for k, v in peer.items() if k != "kind"}))
        if "generate_s" in peer and deep.get("clip_s"):
            speedup = peer["generate_s"] / deep["clip_s"]
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                [{k: v for k, v in r.items() if not k.startswith("_")} for r in results],
                handle,
                indent=1,
            )
    print(f"deep_paper_rtf={_fmt(deep.get('rtf'), 4)} peer_speedup={_fmt(speedup, 4)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
