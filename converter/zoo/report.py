"""The zoo's markdown table, with our shipped model on the same folds as a row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..corpora import LABELS
from .convert import count_macs, latency


def our_model_on_same_folds(
    folds: list[list[str]], cv_path=Path("docs/cv-dscnn.json"), model_path=Path("bench/models/dscnn-v1.tflite")
) -> dict:
    """Our default model's cross-validation numbers for the same held-out speakers, and its size."""
    from ..architectures import build
    from ..dataset import default_metadata

    cv = json.loads(Path(cv_path).read_text())
    rows = [r for r in cv["fold_rows"] if r["held_out"].split() in folds]
    meta = default_metadata()
    model = build("dscnn", meta.frames, meta.features.nfilt, len(LABELS))
    return {
        "folds": [r["held_out"] for r in rows],
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "int8_bytes": Path(model_path).stat().st_size,
        "float_uar": float(np.mean([r["float UAR"] for r in rows])),
        "int8_uar": float(np.mean([r["int8 UAR"] for r in rows])),
        "int8_clip_uar": float(np.mean([r["int8_clip UAR"] for r in rows])),
        "int8_clip_uar_5fold": cv["int8_clip"]["all"]["uar"],
        "epochs": cv["recipe"]["epochs"],
        "int8_p50_ms": latency(Path(model_path)).get("p50_ms"),
    }


def _pct(v):
    return "—" if v is None else f"{100 * v:.1f}"


def _num(v, fmt=".2f"):
    return "—" if v is None else format(v, fmt)


def report_markdown(rows: list[dict], ours: dict | None) -> str:
    """The zoo table; `ours` = the shipped model's cross-validation numbers on the same fold."""
    r0 = rows[0]
    lines = [
        "| model | from | params | MACs | epochs | SI acc % | SI UAR % | int8 | int8 SI UAR % | int8 KB | "
        "random split acc % (speakers shared!) | paper claims | int8 p50 ms | float p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = r.get("int8_status", "")
        lines.append(
            f"| `{r['name']}` | {'seed ' + r['source'] if r['source'].isdigit() else r['source']} | {r['params']:,} | "
            f"{r['macs'] / 1e6:.1f} M | {r['epochs']} | {_pct(r['float']['accuracy'])} | {_pct(r['float']['uar'])} | "
            f"{'yes' if ok == 'converted' else 'partly' if ok.startswith('converted') else '**no**'} | "
            f"{_pct(r.get('int8', {}).get('uar'))} | "
            f"{_num(r['int8_bytes'] / 1024 if r.get('int8_bytes') else None, '.0f')} | "
            f"{_pct(r.get('random_split', {}).get('accuracy'))} | {r['paper_claim']} | "
            f"{_num((r.get('int8_latency') or {}).get('p50_ms'))} | "
            f"{_num((r.get('float_latency') or {}).get('p50_ms'))} |"
        )
    if ours:
        lines.append(
            f"| **round-1 `dscnn`** (the default until Dec 2026, full recipe) | ours | {ours['params']:,} | "
            f"{ours['macs'] / 1e6:.1f} M | "
            f"{ours['epochs']} | — | {_pct(ours['float_uar'])} (window) | yes | {_pct(ours['int8_uar'])} (window), "
            f"**{_pct(ours['int8_clip_uar'])} (clip)** | {ours['int8_bytes'] / 1024:.0f} | — | — | "
            f"{_num(ours.get('int8_p50_ms'))} | — |"
        )
    lines += [
        "",
        f"Protocol: fold 1 of the 5 speaker folds used everywhere in this project (held out: "
        f"{'; '.join(' '.join(f) for f in r0['folds'])}; TESS always in training), {r0.get('n_utterances', '?')} "
        "utterances (RAVDESS speech + every 4th TESS file), 8 classes (RAVDESS taxonomy), one input per "
        "utterance (each paper's own features, through `edge/features.py`), features standardised with "
        "training statistics, each paper's optimiser, batch 32. SI = speaker-independent (held-out actors). "
        "Random split: 80/20 over the same utterances, speakers in both parts: for comparison with the "
        "papers only. Latency: one thread, tflite-runtime, median of ≥ 10 invokes, x86 (not a Pi).",
        "",
    ]
    for r in rows:
        if r.get("int8_status") != "converted":
            lines.append(f"- `{r['name']}` ({r['epochs']} epochs) int8: {r.get('int8_status')}")
        if r.get("float_status", "converted") != "converted":
            lines.append(f"- `{r['name']}` float .tflite (builtin ops): {r['float_status']}")
    return "\n".join(lines) + "\n"
