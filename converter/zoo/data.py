"""The seeds' features for every utterance, computed in parallel and cached."""

from __future__ import annotations

import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from edge.audio import read_audio

from ..corpora import load_corpora
from .networks import SEEDS


def _features_one(args):
    path, names = args
    x = read_audio(path)
    return [SEEDS[n].features(x) for n in names]


def select_utterances(utts, tess_every: int = 1, subset: int = 0):
    """Every `tess_every`-th TESS file (TESS is two speakers saying 200 words in 7 ways: a quarter keeps
    its variety at a quarter of the cost), then every `subset`-th utterance (smoke tests)."""
    keep = np.arange(len(utts))
    if tess_every > 1:
        tess = np.array([u.corpus == "tess" for u in utts])
        keep = keep[~tess | (np.cumsum(tess) % tess_every == 0)]
    if subset > 1:
        keep = keep[::subset]
    return [utts[i] for i in keep]


def load_features(names: list[str], data_dir=None, corpora=("ravdess", "tess"), cache_dir=Path("runs/cache"),
                  workers: int = 2, tess_every: int = 1, subset: int = 0):
    """Per seed: a list of input arrays (n_utterances, ...); plus the utterance table. Cached as .npz."""
    utts = select_utterances(load_corpora(data_dir, corpora), tess_every, subset)
    out, todo = {}, []
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = f"{len(utts)}-{'-'.join(corpora)}"
    for n in names:
        f = cache_dir / f"zoo-{SEEDS[n].features.__name__}-{key}.npz"
        if f.exists():
            with np.load(f) as z:
                out[n] = [z[k] for k in sorted(z.files)]
        else:
            todo.append(n)
    if todo:
        t0 = time.time()
        with Pool(workers) as pool:
            rows = pool.map(_features_one, [(u.path, todo) for u in utts], chunksize=16)
        for j, n in enumerate(todo):
            arrays = [np.stack([r[j][i] for r in rows]) for i in range(len(rows[0][j]))]
            np.savez(cache_dir / f"zoo-{SEEDS[n].features.__name__}-{key}.npz",
                     **{f"a{i}": a for i, a in enumerate(arrays)})
            out[n] = arrays
        print(f"features for {todo}: {time.time() - t0:.0f} s", flush=True)
    return utts, out


def standardise(arrays, train_idx):
    """Per-feature (last axis) mean and std from the training part only."""
    out = []
    for a in arrays:
        axes = tuple(range(a.ndim - 1))
        mu = a[train_idx].mean(axis=axes, keepdims=True)
        sd = a[train_idx].std(axis=axes, keepdims=True) + 1e-6
        out.append(((a - mu) / sd).astype(np.float32))
    return out
