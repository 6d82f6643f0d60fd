"""Markdown tables for docs/RESULTS.md §10 from the run directories of the v2 (crop) experiments.

    python tools/v2_report.py runs/v2s-device runs/v2s-windowmean ...   > table.md

Each run directory holds cv.json (ser-convert evaluate), optionally rescore.json (ser-convert rescore),
stream-fold*.json (tools/cv_stream.py score) and loco-*.json (ser-convert loco).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cv_row(run: Path) -> str:
    r = json.loads((run / "cv.json").read_text())
    rec = r["recipe"]
    s = r["int8"]
    g = s["clip"]["by_gender"]
    pc = s["clip"]["all"]["per_class"]
    worst = min(((k, v["recall"]) for k, v in pc.items() if v["support"]), key=lambda kv: kv[1])
    corpora = "+".join(c[0].upper() for c in rec["corpora"])
    return (
        f"| `{run.name}` | {r['recipe_hash']} | {rec['arch']}, {rec['window_s']:g} s, {rec['bands']} bands, "
        f"{rec['normalisation']}, {corpora} | {len(r.get('folds_done', r['fold_rows']))}/{len(r['folds'])} | "
        f"{r['sizes']['params']:,} | "
        f"{r['sizes']['int8_bytes'] / 1024:.0f} KB | {s['centred']['all']['uar']:.3f} | "
        f"**{s['clip']['all']['uar']:.3f}** | "
        f"{s['any_alignment']['all']['uar']:.3f} | {g['male']['uar']:.3f} / {g['female']['uar']:.3f} | "
        f"{r['float']['clip']['all']['uar']:.3f} | {r['int8_float_agreement']:.3f} | {worst[0]} {worst[1]:.2f} |"
    )


def main(runs: list[str]) -> None:
    print(
        "| run | recipe | model, input, normalisation, corpora | folds | params | int8 | centred UAR | clip UAR | "
        "any-alignment UAR | clip men / women | float clip | int8–float agreement | weakest class (clip recall) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in map(Path, runs):
        if (run / "cv.json").exists():
            print(cv_row(run))
    for run in map(Path, runs):
        rs = run / "rescore.json"
        if rs.exists():
            d = json.loads(rs.read_text())
            print(f"\nAdaptation, `{run.name}` (int8, {len(d['folds'])} folds):\n")
            print("| normalisation at test time | centred UAR | clip UAR | any-alignment UAR | clip men / women |")
            print("|---|---|---|---|---|")
            for key, what in (
                ("int8_adapted", "device statistics learnt from the speaker's earlier utterances"),
                ("int8_prior_only", "training prior only (a fresh device, one clip)"),
                ("int8_lowpass_adapted", "4 kHz low-pass channel, adapted"),
            ):
                s = d[key]
                g = s["clip"]["by_gender"]
                print(
                    f"| {what} | {s['centred']['all']['uar']:.3f} | {s['clip']['all']['uar']:.3f} | "
                    f"{s['any_alignment']['all']['uar']:.3f} | {g['male']['uar']:.3f} / {g['female']['uar']:.3f} |"
                )
        streams = sorted(run.glob("stream-fold*.json"))
        if streams:
            rows = [json.loads(p.read_text()) for p in streams]
            right = sum(r["right"] for r in rows)
            n = sum(r["segments"] for r in rows)
            per_fold = ", ".join(f"{r['fraction_right']:.3f}" for r in rows)
            with_event = sum(r["with_event"] * r["segments"] for r in rows) / n
            print(
                f"\nCV stream, `{run.name}`: {right}/{n} = **{right / n:.3f}** of speech segments right "
                f"(per fold: {per_fold}; segments with any event {with_event:.3f})"
            )
        locos = sorted(run.glob("loco-*.json"))
        if locos:
            print(f"\nLeave one corpus out, `{run.name}` (4 classes, clip UAR):\n")
            print("| held-out corpus | utterances | speakers | adapted | prior only | float adapted |")
            print("|---|---|---|---|---|---|")
            for p in locos:
                d = json.loads(p.read_text())
                print(
                    f"| {d['held_out_corpus']} | {d['n']} | {d['speakers']} | {d['int8_adapted']['clip_uar']:.3f} | "
                    f"{d['int8_prior_only']['clip_uar']:.3f} | {d['float']['clip_uar']:.3f} |"
                )


if __name__ == "__main__":
    main(sys.argv[1:])
