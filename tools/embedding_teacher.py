"""Soft targets from a speaker encoder pretrained on thousands of voices (workstation only, never the device).

    python tools/embedding_teacher.py --folds-from runs/t-s12/cv.json --out runs/emb-teacher.npz

Our networks learn emotion from 22 voices; a speaker encoder has heard thousands. resemblyzer's GE2E
encoder (pretrained weights ship in its PyPI wheel; it needs torch, so it runs in its own environment:
`python -m venv /tmp/rzenv && /tmp/rzenv/bin/pip install torch resemblyzer soundfile scikit-learn
'setuptools<70'`) maps an utterance to 256 numbers that mostly say *who* speaks. With each speaker's mean
embedding removed (a device hears the same voices; `[adaptation]` does the same for the log-mel bands)
what is left says how this utterance differs from that voice, and a logistic regression on it reads
emotion.

For every CV fold (the held-out speakers of a crop run's cv.json) and for the final model, every training
utterance gets that regression's probabilities *out of fold*: the regression that scores an utterance
never saw its speaker (leave one speaker out inside the fold's training speakers; its C chosen there too).
The held-out speakers' rows are NaN: nothing of theirs reaches training. `soft_targets` in a crop recipe
reads the file (converter/crops.py); it also holds each utterance's centred embedding, standardised
(`embedding`), for `embedding_weight`: a second head of the student that must predict it in training,
so its convolutions learn what the encoder sees (the head is not in the device's model). The outer CV's
score of the regression alone is printed: a number about the teacher, not the device.

    python tools/embedding_teacher.py --folds-from runs/t-s12/cv.json --out runs/emb-teacher.npz \
        --fuse runs/t-s12 runs/t-s13

--fuse scores the regression the way a device would meet a voice (each held-out speaker centred causally:
by the mean of that speaker's utterances heard before, in a random order, starting from the training
speakers' mean), alone and with its probabilities added to each crop run's int8 clip probabilities: what
the encoder knows that the network does not.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from converter.corpora import LABELS, load_corpora  # noqa: E402  (standard library only: no TensorFlow)

RAW = {"fear": "fearful", "ps": "surprised"}  # TESS's names in the manifest (converter.corpora's mapping)
C_GRID = (0.01, 0.03, 0.1, 0.3)


def uar(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def embed(data: Path, rows: list[dict], cache: Path) -> np.ndarray:
    """The mean of each utterance's partial (1.6 s) embeddings; cached by path."""
    if cache.exists():
        d = np.load(cache)
        if list(d["paths"]) == [r["path"] for r in rows]:
            return d["emb"]
    import soundfile as sf
    import torch
    from resemblyzer import VoiceEncoder

    torch.set_num_threads(1)
    enc = VoiceEncoder("cpu")
    out = []
    for k, r in enumerate(rows):
        x, rate = sf.read(data / r["path"], dtype="float32")
        if rate != 16000:
            raise SystemExit(f"{r['path']}: {rate} Hz; the encoder expects 16 kHz")
        out.append(enc.embed_utterance(x, return_partials=True)[1].mean(0))
        if k % 500 == 0:
            print(f"embedded {k}/{len(rows)}", flush=True)
    emb = np.array(out, np.float32)
    np.savez(cache, paths=np.array([r["path"] for r in rows]), emb=emb)
    return emb


def centred(emb: np.ndarray, speaker: np.ndarray) -> np.ndarray:
    z = emb.astype(np.float64).copy()
    for s in np.unique(speaker):
        z[speaker == s] -= z[speaker == s].mean(0)
    return z


def fit_predict(z, y, train, test, C):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(z[train])
    lr = LogisticRegression(C=C, max_iter=3000).fit(sc.transform(z[train]), y[train])
    p = np.zeros((int(np.sum(test)), len(LABELS)))
    p[:, lr.classes_] = lr.predict_proba(sc.transform(z[test]))
    return p


def out_of_fold(z, y, speaker, train) -> tuple[np.ndarray, float]:
    """Leave-one-speaker-out probabilities for the utterances in `train` (NaN elsewhere), at the C whose
    out-of-fold UAR over those speakers is best."""
    best = None
    for C in C_GRID:
        p = np.full((len(y), len(LABELS)), np.nan)
        for s in np.unique(speaker[train]):
            held = train & (speaker == s)
            p[held] = fit_predict(z, y, train & ~held, held, C)
        score = uar(y[train], p[train].argmax(1))
        if best is None or score > best[0]:
            best = (score, C, p)
    return best[2], best[1]


def causal(emb, speaker, test, rng, prior_weight: float = 5.0) -> np.ndarray:
    """Training speakers centred on their own mean; each held-out speaker's utterance on the mean of the
    ones before it (the training speakers' mean counted as `prior_weight` utterances)."""
    z = centred(emb, np.where(test, "held-out", speaker))
    prior = emb[~test].mean(0)
    for s in np.unique(speaker[test]):
        total, n = prior * prior_weight, prior_weight
        for i in rng.permutation(np.flatnonzero(speaker == s)):
            z[i] = emb[i] - total / n
            total, n = total + emb[i], n + 1
    return z


def fuse(a, rows, emb, speaker, y, folds, C: float) -> None:
    utts = load_corpora(a.data, ("ravdess", "tess", "nemo", "urdu"))  # converter.crops.ALL_CORPORA's order
    row = {r["path"]: k for k, r in enumerate(rows)}
    rng = np.random.default_rng(0)
    reg, ys, runs = [], [], {str(r): [] for r in a.fuse}
    for k, held_out in enumerate(folds):
        test = np.isin(speaker, held_out)
        p = fit_predict(causal(emb, speaker, test, rng), y, ~test, test, C)
        order = {int(i): j for j, i in enumerate(np.flatnonzero(test))}
        for r in a.fuse:
            d = np.load(Path(r) / f"fold{k}-predictions.npz")
            at = [order[row[str(Path(utts[int(i)].path).relative_to(a.data.resolve()))]] for i in d["test"]]
            runs[str(r)].append((d["int8"].mean(1), p[at], d["y"]))
        reg.append(p), ys.append(y[test])
    print(f"regression alone, causal centring (C {C}): {uar(np.concatenate(ys), np.concatenate(reg).argmax(1)):.3f}")
    for r, parts in runs.items():
        net, rg, yy = (np.concatenate(x) for x in zip(*parts))
        print(f"{r}: int8 clip UAR {uar(yy, net.argmax(1)):.3f}, "
              f"with the regression {uar(yy, (net + rg).argmax(1)):.3f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SER_DATA", "../shared/data")))
    ap.add_argument("--folds-from", type=Path, required=True, help="a crop run's cv.json (its held-out speakers)")
    ap.add_argument("--corpora", nargs="+", default=["ravdess", "tess"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--fuse", nargs="+", default=[], help="crop run directories to fuse with (see above)")
    a = ap.parse_args(argv)
    rows = [r for r in csv.DictReader(open(a.data / "manifest.csv")) if r["corpus"] in a.corpora]
    speaker = np.array([r["speaker"] for r in rows])
    y = np.array([LABELS.index(RAW.get(r["label"], r["label"])) for r in rows])
    emb = embed(a.data, rows, a.out.with_suffix(".emb.npz"))
    z = centred(emb, speaker)
    folds = json.loads(a.folds_from.read_text())["folds"]
    targets, outer_p, outer_y = {}, [], []
    for k, held_out in enumerate(folds):
        test = np.isin(speaker, held_out)
        targets[f"fold{k}"], C = out_of_fold(z, y, speaker, ~test)
        outer_p.append(fit_predict(z, y, ~test, test, C)), outer_y.append(y[test])
        print(f"fold {k}: C {C}; held-out UAR of the regression alone "
              f"{uar(y[test], outer_p[-1].argmax(1)):.3f}", flush=True)
    targets["final"], C = out_of_fold(z, y, speaker, np.ones(len(y), bool))
    print(f"all folds: held-out UAR of the regression alone "
          f"{uar(np.concatenate(outer_y), np.concatenate(outer_p).argmax(1)):.3f}; final C {C}")
    embedding = ((z - z.mean(0)) / np.maximum(z.std(0), 1e-6)).astype(np.float16)  # some units never fire
    np.savez(a.out, paths=np.array([r["path"] for r in rows]), labels=np.array(LABELS), embedding=embedding,
             **{k: v.astype(np.float32) for k, v in targets.items()})
    print(f"wrote {a.out}")
    if a.fuse:
        fuse(a, rows, emb, speaker, y, folds, C)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
