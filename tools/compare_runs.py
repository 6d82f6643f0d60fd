"""Compare crop-recipe CV runs on the folds they all finished, pooled: the same held-out utterances.

    python tools/compare_runs.py docs/results/v2a-rt runs/v2g-share [--key int8] [--ensemble]

Prints one Markdown row per run: folds, clip / centred / any-alignment UAR, men / women (clip), the
recall of the weakest classes, and each fold's clip UAR. Per-fold reports (cv.md) pool whatever folds a
run has; this pools only the folds every run has, so two runs are compared on the same voices. --ensemble adds a
row for the runs' mean probability per window (members of one recipe that differ in train_seed), and one
for every pair of them. --teachers RUN... adds each run's top-1 agreement with those runs' mean probability
(every window, and per clip) on the same held-out utterances: how much of an ensemble's function a
distilled student took over where it was never trained. --by-actor adds each held-out speaker's clip
UAR (per run and their mean) and tests the men-women gap with the speaker as the unit: an exact
permutation test over the ways to split the speakers into two genders of the same sizes, and a
bootstrap 95 % interval (speakers resampled within each gender). With 10 actors of each gender a gap of
a few points cannot be told from zero; this says how far from it one is.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from converter.corpora import load_corpora  # noqa: E402
from converter.crops import ALL_CORPORA, scores  # noqa: E402


def folds_of(run: Path) -> set[int]:
    return {int(f.name[4 : f.name.index("-")]) for f in run.glob("fold*-predictions.npz")}


def pooled(run: Path, folds: list[int], key: str) -> tuple:
    """test indices, labels, window probabilities (utterances, alignments, classes), per-fold clip UAR,
    per-fold utterance counts."""
    tests, ys, ps, per_fold = [], [], [], []
    for k in folds:
        d = np.load(run / f"fold{k}-predictions.npz")
        tests.append(d["test"]), ys.append(d["y"]), ps.append(d[key])
        per_fold.append(scores(d["y"], d[key], {})["clip"]["all"]["uar"])
    return np.concatenate(tests), np.concatenate(ys), np.concatenate(ps), per_fold, [len(t) for t in tests]


def ensemble_row(rows: list) -> tuple:
    """The members' mean probability per window; the members must hold out the same utterances."""
    _, test, y, _, _, sizes = rows[0]
    if any(not np.array_equal(r[1], test) for r in rows):
        raise SystemExit("--ensemble: the runs hold out different utterances (another fold seed?)")
    pw = np.mean([r[3] for r in rows], axis=0)
    ends = np.cumsum(sizes)
    per_fold = [scores(y[e - n : e], pw[e - n : e], {})["clip"]["all"]["uar"] for n, e in zip(sizes, ends)]
    return (f"ensemble of {' + '.join(Path(r[0]).name for r in rows)}", test, y, pw, per_fold, sizes)


def gender_gap_test(values: np.ndarray, is_female: np.ndarray, n_boot: int = 20000,
                    max_exact: int = 300_000, seed: int = 0) -> dict:
    """Women's mean minus men's over speakers; two-sided permutation p (exact when the splits are few
    enough, else random relabellings) and a bootstrap 95 % interval (speakers resampled per gender)."""
    values, is_female = np.asarray(values, float), np.asarray(is_female, bool)
    n, k = len(values), int(is_female.sum())
    gap = values[is_female].mean() - values[~is_female].mean()
    rng = np.random.default_rng(seed)
    total = values.sum()
    if math.comb(n, k) <= max_exact:
        sums = np.array([values[list(c)].sum() for c in itertools.combinations(range(n), k)])
    else:
        sums = np.array([values[rng.permutation(n)[:k]].sum() for _ in range(max_exact)])
    gaps = sums / k - (total - sums) / (n - k)
    p = float(np.mean(np.abs(gaps) >= abs(gap) - 1e-12))
    f, m = values[is_female], values[~is_female]
    boot = rng.choice(f, (n_boot, len(f))).mean(1) - rng.choice(m, (n_boot, len(m))).mean(1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"gap": float(gap), "p": p, "ci95": (float(lo), float(hi))}


def by_actor(rows: list, speakers: np.ndarray, gender: np.ndarray) -> None:
    """Each held-out speaker's clip UAR in each run, their mean, and the gender gap over speakers."""
    per_run = []
    for _, test, y, pw, _, _ in rows:
        s = scores(y, pw, {"speaker": speakers[test]})["clip"]["by_speaker"]
        per_run.append({spk: v["uar"] for spk, v in s.items()})
    names = sorted(per_run[0])
    gender_of = dict(zip(speakers, gender))
    print("\n| speaker | gender | " + " | ".join(Path(r[0]).name for r in rows) + " | mean |")
    print("|---|---|" + "---|" * (len(rows) + 1))
    means = []
    for spk in names:
        vals = [r[spk] for r in per_run]
        means.append(np.mean(vals))
        print(f"| {spk} | {gender_of[spk]} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {means[-1]:.3f} |")
    female = np.array([gender_of[spk] == "female" for spk in names])
    t = gender_gap_test(np.array(means), female)
    print(f"\nWomen minus men over {female.sum()} women and {(~female).sum()} men (mean of the runs): "
          f"{100 * t['gap']:.1f} points, permutation p = {t['p']:.3f}, bootstrap 95 % interval "
          f"{100 * t['ci95'][0]:.1f} to {100 * t['ci95'][1]:.1f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--key", default="int8", help="int8, float, int8_lowpass or int8_noise60")
    p.add_argument("--ensemble", action="store_true", help="also score the runs' mean probability (and every pair's)")
    p.add_argument("--teachers", nargs="+", type=Path, default=[], help="runs whose mean each run is compared with")
    p.add_argument("--by-actor", action="store_true",
                   help="each held-out speaker's clip UAR, and the gender gap tested over speakers")
    p.add_argument("--data", default=os.environ.get("SER_DATA"))
    a = p.parse_args(argv)
    common = sorted(set.intersection(*(folds_of(r) for r in [*a.runs, *a.teachers])))
    if not common:
        raise SystemExit("no fold is finished in every run")
    utterances = load_corpora(a.data, ALL_CORPORA)  # the index space of `test`
    gender = np.array([u.gender for u in utterances])
    weak = ("neutral", "sad", "happy")
    print(f"Folds (0-based) finished in every run: {common}; {a.key}\n")
    print("| run | clip UAR | centred | any alignment | men / women (clip) | "
          + " | ".join(f"{w} recall" for w in weak) + " | clip UAR per fold |")
    print("|---|---|---|---|---|" + "---|" * len(weak) + "---|")
    rows = [(str(run), *pooled(run, common, a.key)) for run in a.runs]
    if a.ensemble:
        groups = [rows] + (list(itertools.combinations(rows, 2)) if len(rows) > 2 else [])
        rows += [ensemble_row(g) for g in groups]
    for name, test, y, pw, per_fold, _ in rows:
        s = scores(y, pw, {"gender": gender[test]})
        clip = s["clip"]
        recall = [clip["all"]["per_class"][w]["recall"] for w in weak]
        mw = " / ".join(f"{clip['by_gender'].get(g, {}).get('uar', float('nan')):.3f}" for g in ("male", "female"))
        print(f"| {name} | {clip['all']['uar']:.3f} | {s['centred']['all']['uar']:.3f} | "
              f"{s['any_alignment']['all']['uar']:.3f} | {mw} | " + " | ".join(f"{r:.2f}" for r in recall)
              + " | " + " ".join(f"{u:.3f}" for u in per_fold) + " |")
    if a.by_actor:
        by_actor(rows[: len(a.runs)], np.array([u.speaker for u in utterances]), gender)
    if a.teachers:
        teachers = ensemble_row([(str(t), *pooled(t, common, a.key)) for t in a.teachers])
        print(f"\nTop-1 agreement with the mean of {', '.join(map(str, a.teachers))} ({a.key}):\n")
        print("| run | every window | per clip |\n|---|---|---|")
        for name, test, _, pw, _, _ in rows:
            if not np.array_equal(test, teachers[1]):
                raise SystemExit("--teachers: the runs hold out different utterances (another fold seed?)")
            win = np.mean(pw.argmax(-1) == teachers[3].argmax(-1))
            clip = np.mean(pw.mean(1).argmax(-1) == teachers[3].mean(1).argmax(-1))
            print(f"| {name} | {win:.3f} | {clip:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
