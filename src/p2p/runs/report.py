"""``report(SWEEP_DIR)``: a sweep's runs as the paper's ablation tables (1-3, 5) and figures (4-6).

    p2p-train -m experiment=ablation_loss data=facades data.root=/data/facades
    p2p-report multirun/ablation_loss/<time>

Reads ``<run>/metrics.json`` (written by every run of an ``experiment=ablation_*`` sweep, or by p2p-eval)
and ``<run>/samples/`` (its first test images). Prints a markdown table, one row per variant (FCN
per-pixel / per-class accuracy and class IoU as in Tables 1-3, then FID, KID, PSNR, SSIM) with the
ground-truth row last (real test photos through the same segmenter), then the colour-histogram
intersections of Table 5. Writes ``report.md`` and ``report.png`` (rows: test inputs; columns: input,
each variant, ground truth) into the sweep folder.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from p2p.errors import DataError, InputNotFoundError

# Row labels as the paper prints them, per ablation (its name and swept config groups: conf/experiment).
LOSS_LABELS = {"l1": "L1", "gan": "GAN", "cgan": "cGAN", "l1_gan": "L1+GAN", "l1_cgan": "L1+cGAN"}
LABELS: dict[str, dict[str, dict[str, str]]] = {
    "loss": {"loss": LOSS_LABELS},
    "patch": {
        "model": {
            "unet_patch1": "1x1 (PixelGAN)",
            "unet_patch16": "16x16",
            "unet_patch70": "70x70",
            "unet_patch286": "286x286 (ImageGAN)",
        }
    },
    "generator": {
        "model": {"encdec_patch70": "Encoder-decoder", "unet_patch70": "U-Net"},
        "loss": LOSS_LABELS,
    },
}
FIRST_COLUMN = {"loss": "Loss", "patch": "Discriminator receptive field", "generator": "Generator (loss)"}
# (key in metrics.json, column title, format)
COLUMNS = [
    ("fcn_pixel_acc", "Per-pixel acc.", "{:.2f}"),
    ("fcn_class_acc", "Per-class acc.", "{:.2f}"),
    ("fcn_class_iou", "Class IOU", "{:.2f}"),
    ("fid", "FID", "{:.1f}"),
    ("kid", "KID", "{:.3f}"),
    ("psnr", "PSNR", "{:.2f}"),
    ("ssim", "SSIM", "{:.3f}"),
]
# which way is better, for the orderings under the table
HIGHER_IS_BETTER = {"fcn_pixel_acc", "fcn_class_acc", "fcn_class_iou", "psnr", "ssim", "color_hist_L",
                    "color_hist_a", "color_hist_b"}  # fmt: skip
# the keys that tell repeated runs of one variant apart (`group_runs`)
SEED_KEYS = ("seed", "data.seed")
COLOR_COLUMNS = [
    ("color_hist_L", "L", "{:.3f}"),
    ("color_hist_a", "a", "{:.3f}"),
    ("color_hist_b", "b", "{:.3f}"),
]


def find_runs(sweep_dir: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[Path]]:
    """(runs with metrics.json in job order, run folders without one)."""
    if not sweep_dir.is_dir():
        raise InputNotFoundError(f"sweep folder {sweep_dir} does not exist")
    dirs = [sweep_dir] if (sweep_dir / "metrics.json").is_file() else []
    dirs += sorted((d for d in sweep_dir.iterdir() if d.is_dir()), key=_job_order)
    runs, missing = [], []
    for d in dirs:
        path = d / "metrics.json"
        if path.is_file():
            try:
                runs.append((d, json.loads(path.read_text())))
            except json.JSONDecodeError as e:
                raise DataError(f"{path} is not valid JSON: {e}") from e
        elif (d / ".hydra").is_dir() or (d / "checkpoints").is_dir():
            missing.append(d)
    return runs, missing


def _job_order(d: Path) -> tuple[int, str]:
    m = re.match(r"(\d+)_", d.name)  # Hydra's sweep subdirs start with the job number
    return (int(m.group(1)) if m else 1 << 30, d.name)


def variant_label(run_dir: Path, m: dict[str, Any]) -> str:
    """The paper's name for this run's variant, from its ablation and config choices; else the folder name."""
    ablation, choices = m.get("ablation") or {}, m.get("choices") or {}
    keys = ablation.get("keys") or []
    table = LABELS.get(ablation.get("name", ""), {})
    names = [table.get(k, {}).get(choices.get(k, ""), choices.get(k)) for k in keys]
    if not names or not all(isinstance(n, str) for n in names):
        return run_dir.name
    first, *rest = [str(n) for n in names]
    return first + (f" ({', '.join(rest)})" if rest else "")


@dataclass
class Variant:
    """The runs of one variant: the same config but for its seeds (`SEED_KEYS`)."""

    label: str
    runs: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    seeds: list[Any] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [float(m[key]) for _, m in self.runs if m.get(key) is not None]

    def mean_std(self, key: str) -> tuple[float, float | None] | None:
        """Mean and standard deviation; the deviation is None (unknown, not 0) for a single run."""
        vals = self.values(key)
        if not vals:
            return None
        return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def _overrides(run_dir: Path) -> list[str] | None:
    """The run's command-line overrides as Hydra recorded them (``.hydra/overrides.yaml``), if it did."""
    path = run_dir / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else None  # type: ignore[union-attr]


def _key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def group_runs(runs: list[tuple[Path, dict[str, Any]]]) -> list[Variant]:
    """Runs that differ only by their seeds (``seed=1,2,3`` in a sweep) as one variant each, in job order.
    Runs without Hydra's record of their overrides are grouped by their variant label."""
    groups: dict[tuple[str, ...], Variant] = {}
    for d, m in runs:
        overrides = _overrides(d)
        seed = None
        if overrides is None:
            ident: tuple[str, ...] = ("label", variant_label(d, m))
        else:
            ident = tuple(sorted(o for o in overrides if _key(o) not in SEED_KEYS))
            seed = next((o.partition("=")[2] for o in overrides if _key(o) == "seed"), None)
        variant = groups.setdefault(ident, Variant(variant_label(d, m)))
        variant.runs.append((d, m))
        variant.seeds.append(seed)
    return list(groups.values())


def _fmt(v: Any, fmt: str) -> str:
    return "—" if v is None else fmt.format(v)


def _cell(variant: Variant, key: str, fmt: str, spread: bool) -> str:
    ms = variant.mean_std(key)
    if ms is None:
        return "—"
    return f"{fmt.format(ms[0])} ± {fmt.format(ms[1])}" if spread and ms[1] is not None else fmt.format(ms[0])


def ordering(variants: list[Variant], key: str, fmt: str) -> str | None:
    """The variants from best to worst by their mean of ``key``; ``>`` where two neighbours' mean ± std
    intervals do not overlap (the difference exceeds the seeds' spread), ``≈`` where they do, ``?`` where
    one of them has a single run (its spread is unknown)."""
    scored = [(v, ms) for v in variants if (ms := v.mean_std(key)) is not None]
    if len(scored) < 2:
        return None
    scored.sort(key=lambda t: t[1][0], reverse=key in HIGHER_IS_BETTER)
    text = f"{scored[0][0].label} ({fmt.format(scored[0][1][0])})"
    for (_, (m0, s0)), (v, (m1, s1)) in itertools.pairwise(scored):
        sep = " ? " if s0 is None or s1 is None else " > " if abs(m0 - m1) > s0 + s1 else " ≈ "
        text += sep + f"{v.label} ({fmt.format(m1)})"
    return text


def markdown(runs: list[tuple[Path, dict[str, Any]]], missing: Sequence[Path] = ()) -> str:
    if not runs:
        raise InputNotFoundError(
            "no run with a metrics.json: train with an experiment=ablation_* sweep, or run p2p-eval"
        )
    variants = group_runs(runs)
    seeded = any(len(v.runs) > 1 for v in variants)  # mean ± std over seeds, and a "Seeds" column
    first = runs[0][1]
    name = (first.get("ablation") or {}).get("name", "")
    res = "x".join(str(s) for s in first.get("resolution") or [])
    lines = [
        f"**{first.get('dataset')}**, {first.get('split')} split: {first.get('num_images')} images at {res}, "
        f"inference={first.get('inference')}",
        "",
        "| "
        + " | ".join([FIRST_COLUMN.get(name, "Variant")] + ["Seeds"] * seeded + [c[1] for c in COLUMNS])
        + " |",
        "|---" * (len(COLUMNS) + 1 + seeded) + "|",
    ]
    for v in variants:
        seeds = [", ".join(str(s) for s in v.seeds if s is not None) or str(len(v.runs))] * seeded
        cells = [_cell(v, k, f, seeded) for k, _, f in COLUMNS]
        lines.append("| " + " | ".join([v.label, *seeds, *cells]) + " |")
    # the segmenter on the real photos: the same for every run that used the same segmenter
    real = [runs[-1][1].get(f"fcn_real_{k}") for k in ("pixel_acc", "class_acc", "class_iou")]
    lines.append("| Ground truth | " + " | ".join(["—"] * seeded + [_fmt(v, "{:.2f}") for v in real])
                 + " | — | — | — | — |")  # fmt: skip
    if seeded:
        lines += ["", "Mean ± standard deviation over the seeds. Best to worst by the mean; `>`: the two "
                  "neighbours' mean ± std intervals do not overlap (beyond the seeds' spread), `≈`: they do, `?`: one of "
                  "them has a single seed.", ""]  # fmt: skip
        for k, title, f in COLUMNS:
            if (text := ordering(variants, k, f)) is not None:
                lines.append(f"- {title}: {text}")
    protocols = {(m.get("dataset"), m.get("num_images"), tuple(m.get("resolution") or ()), m.get("inference"))
                 for _, m in runs}  # fmt: skip
    if len(protocols) > 1:
        lines += [
            "",
            f"**Warning**: the runs were evaluated under different protocols: {sorted(map(str, protocols))}",
        ]
    if any(m.get("fcn_pixel_acc") is None for _, m in runs):
        notes = {m.get("notes", {}).get("fcn") for _, m in runs} - {None}
        lines += ["", "FCN-score not available: " + "; ".join(sorted(notes or {"not computed"}))]
    if any(m.get("color_hist_L") is not None for _, m in runs):
        lines += ["", "Colour distributions (Table 5): histogram intersection of Lab channels with the real photos",
                  "", "| Variant | " + " | ".join(c[1] for c in COLOR_COLUMNS) + " |", "|---" * 4 + "|"]  # fmt: skip
        for v in variants:
            lines.append(
                "| " + " | ".join([v.label] + [_cell(v, k, f, seeded) for k, _, f in COLOR_COLUMNS]) + " |"
            )
    if missing:
        lines += [
            "",
            "Runs without metrics.json (failed or not evaluated): " + ", ".join(d.name for d in missing),
        ]
    return "\n".join(lines) + "\n"


def figure(runs: list[tuple[Path, dict[str, Any]]], num_images: int = 4) -> Image.Image | None:
    """Rows: the first test inputs; columns: input | each variant's output | ground truth (Figures 4-6)."""
    sample_dirs = [(variant_label(d, m), d / "samples") for d, m in runs if (d / "samples").is_dir()]
    if not sample_dirs:
        return None
    ref = sample_dirs[0][1]
    n = min(num_images, len(list(ref.glob("*_input.png"))))
    if n == 0:
        return None
    cols = (
        [("Input", ref, "input")]
        + [(lab, s, "output") for lab, s in sample_dirs]
        + [("Ground truth", ref, "target")]
    )
    w, h = Image.open(ref / "000_input.png").size
    pad, header = 4, 18
    canvas = Image.new("RGB", (len(cols) * (w + pad) + pad, header + n * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, (label, folder, kind) in enumerate(cols):
        x = pad + j * (w + pad)
        draw.text((x, 3), label[: max(4, w // 6)], fill="black")
        for i in range(n):
            path = folder / f"{i:03d}_{kind}.png"
            if path.is_file():
                canvas.paste(
                    Image.open(path).convert("RGB").resize((w, h)), (x, header + pad + i * (h + pad))
                )
    return canvas


def report(sweep_dir: str | Path, num_images: int = 4, out_dir: str | Path | None = None) -> str:
    """Write report.md and report.png for a sweep folder; returns the markdown."""
    sweep_dir = Path(sweep_dir).expanduser()
    runs, missing = find_runs(sweep_dir)
    md = markdown(runs, missing)
    out = Path(out_dir).expanduser() if out_dir else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    fig = figure([v.runs[0] for v in group_runs(runs)], num_images)  # one column per variant (its first seed)
    if fig is not None:
        fig.save(out / "report.png")
        md += "\n![same test inputs through every variant](report.png)\n"
    (out / "report.md").write_text(md)
    return md
