"""p2p-bench: one JSON object on the last stdout line, the figures it promises, variants that switch features."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from p2p.runs.bench import apply_overrides, bench
from p2p.training import perf

# 64x64 pairs, widths 8, one timed step in one round: the mechanics in seconds
TINY = [
    "debug=smoke", "data=synthetic", "model.generator.num_downs=6", "data.load_size=72", "data.crop_size=64",
    "bench.steps=1", "bench.rounds=1", "bench.warmup=0",
]  # fmt: skip
KEYS = [
    "train_images_per_s", "infer_images_per_s", "peak_mem_mb", "flops_per_image", "achieved_tflops",
    "device", "precision", "versions", "modes", "speedup_vs_plain_fp32",
]  # fmt: skip


def test_p2p_bench_prints_one_json_object_on_its_last_line(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "p2p.cli.bench", *TINY, f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(k in result for k in KEYS), sorted(set(KEYS) - set(result))
    assert set(result["modes"]) == {"plain_fp32", "p2p"} and result["main_mode"] == "p2p"
    assert result["precision"] == perf.resolve_precision("auto", "cpu")
    assert {"torch", "lightning", "p2p"} <= set(result["versions"])
    p2p, plain = result["modes"]["p2p"], result["modes"]["plain_fp32"]
    for mode in (p2p, plain):
        assert mode["train_images_per_s"] > 0 and mode["infer_images_per_s"] > 0 and mode["peak_mem_mb"] > 0
    # a training step (G forward + backward, D three times) costs several inference forwards of G
    assert result["flops_per_image"] > 3 * result["infer_flops_per_image"] > 0
    assert result["achieved_tflops"] == pytest.approx(
        result["flops_per_image"] * p2p["train_images_per_s"] / 1e12
    )
    # the speedup pairs each round of p2p with the plain steps run between its batches
    assert result["speedup_vs_plain_fp32"] == pytest.approx(statistics.median(p2p["speedup_steps"]), abs=1e-3)
    assert len(plain["train_step_s"]) == len(p2p["train_step_s"]) == len(p2p["speedup_steps"]) == 1


def test_variants_switch_one_feature_each(compose_train, tmp_path) -> None:
    cfg = compose_train([*TINY, "bench.compare=[p2p_fp32,p2p_nhwc]"], tmp_path, config_name="bench")
    result = bench(cfg)
    fp32, nhwc = result["modes"]["p2p_fp32"], result["modes"]["p2p_nhwc"]
    assert fp32["precision"] == "32" and fp32["channels_last"] == perf.resolve_channels_last("auto", "cpu")
    assert nhwc["precision"] == perf.resolve_precision("auto", "cpu") and nhwc["channels_last"]
    assert result["main_mode"] == "p2p_fp32" and result["speedup_vs_plain_fp32"] is None  # no plain mode
    assert result["flops_per_image"] > 0  # counted even without the plain mode


def test_bench_names_what_is_wrong(compose_train, tmp_path) -> None:
    cfg = compose_train([*TINY, "bench.compare=[p2p,p2p_turbo]"], tmp_path, config_name="bench")
    with pytest.raises(ValueError, match="p2p_turbo"):
        bench(cfg)
    with pytest.raises(ValueError, match=r"no key 'model\.chanels_last'"):
        apply_overrides(cfg, ["model.chanels_last=false"])
    with pytest.raises(ValueError, match="not key=value"):
        apply_overrides(cfg, ["model.compile"])
    assert apply_overrides(cfg, ["trainer.precision=32", "data.cache=none"]).trainer.precision == 32


@pytest.mark.slow
def test_memory_sweep_reports_the_largest_size_within_the_budget(compose_train, tmp_path) -> None:
    from p2p.runs.bench import memory_sweep

    sweep = ["bench.sizes=[64,128]", "bench.memory_modes=[translate]"]
    cfg = compose_train([*TINY, *sweep], tmp_path, config_name="bench")
    fits = memory_sweep(cfg)
    assert fits["largest"] == {"translate": 128}
    assert all(row["ok"] and row["peak_mb"] > 0 for row in fits["sizes"]["translate"].values())
    tight = memory_sweep(compose_train([*TINY, *sweep, "bench.memory_budget_mb=1"], tmp_path, "bench"))
    assert tight["largest"] == {} and list(tight["sizes"]["translate"]) == [64]  # stops at the first failure
    assert not tight["sizes"]["translate"][64]["ok"] and tight["sizes"]["translate"][64]["error"]
