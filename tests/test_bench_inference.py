"""bench/inference.py's per-stage breakdown and its --against guard, on the tiny size."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "inference.py"
pytestmark = pytest.mark.filterwarnings("ignore:I3DExtractor has no weights file")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_inference", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stages_count_what_runs(bench):
    plain = bench.work_stages({"size": "tiny", "level": "deep", "mode": "plain", "reps": 1})
    fast = bench.work_stages({"size": "tiny", "level": "deep", "mode": "float32", "reps": 1})
    bf16 = bench.work_stages({"size": "tiny", "level": "deep", "mode": "bfloat16", "reps": 1})
    names = ["encoder", "forger", "extractor", "generator", "quantize", "decoder"]
    assert list(plain["stages"]) == names == list(fast["stages"])
    for name in ("extractor", "generator", "quantize", "decoder"):
        # Executed (torch's counter) and defined (the Table 1 convention) arithmetic agree.
        assert plain["stages"][name]["gflop"] == plain["stages"][name]["model_gflop"], name
    assert plain["stages"]["forger"]["gflop"] == 0
    # The fast path's stem skips repeated frames: less runs than the network defines.
    assert fast["stages"]["extractor"]["gflop"] < plain["stages"]["extractor"]["gflop"]
    assert fast["stages"]["decoder"]["gflop"] == plain["stages"]["decoder"]["gflop"]
    # bfloat16's prepacked oneDNN convolutions are counted too (the bench gives their formula).
    for name in ("extractor", "generator", "decoder"):
        assert bf16["stages"][name]["gflop"] == fast["stages"][name]["gflop"], name
    assert all(row["ms"] > 0 for row in fast["stages"].values())
    assert fast["peak"]["fp32_gflops"] > 0 and fast["total_ms"] > 0


@pytest.mark.slow
def test_against_a_revision_runs_both_trees():
    done = subprocess.run(
        [sys.executable, str(BENCH), "--against", "HEAD", "--size", "tiny", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    origins = [line for line in lines if '"conchshell_from"' in line]
    assert len(origins) == 2 and "conchshell-against-" in origins[1]
    assert "conchshell-against-" not in origins[0]
    assert lines[-1].startswith("speedup_vs_against=")
    assert float(lines[-1].split("=")[1]) > 0
    # One peak per run and side, from the runs' own JSON lines.
    peaks = [json.loads(line)["peak_rss_mb"] for line in origins]
    assert lines[-2] == f"peak RSS MB: here {peaks[0]:.0f}; against {peaks[1]:.0f}"


def test_onednn_kernels_are_summed_between_the_markers(bench):
    out = "\n".join(
        [
            "onednn_verbose,v1,info,cpu,isa:Intel AMX with bfloat16",
            "onednn_verbose,v1,primitive,exec,cpu,convolution,brg:amx,fwd,src:bf16 d:x,,,p,9.0",
            "KERNELS-BEGIN",
            "onednn_verbose,v1,primitive,exec,cpu,convolution,brg:amx,fwd,src:bf16 d:x,,,p,1.5",
            "onednn_verbose,v1,primitive,exec,cpu,convolution,brg:amx,fwd,src:bf16 d:x,,,p,2.0",
            "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32::a dst:y,,,p,0.25",
            "KERNELS-END",
        ]
    )
    got = bench._onednn_kernels(out)
    assert got["isa"] == "Intel AMX with bfloat16"
    assert got["kernels_ms"] == {"convolution brg:amx (bf16)": 3.5, "reorder jit:uni (f32)": 0.2}
