"""Utterances -> model windows, through edge.features (the code the device runs).

For each utterance we keep: the clean speech-centred window, the same window through a 4 kHz low-pass
(the channel-shift evaluation), and `n_aug` randomly augmented windows (training only). Folds are
speaker-independent: group k-fold by speaker with a fixed seed, gender-stratified.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from edge import features as F
from edge.audio import read_audio
from edge.model import ModelMetadata

from . import augment
from .corpora import LABELS, Utterance

SPEECH_RANGE_DB = 35.0  # frames within this of the loudest count as speech when centring a crop


def default_metadata(window_s: float = 2.0, hop_s: float = 0.5) -> ModelMetadata:
    """The default recipe's front end: 40 log-mel bands, 25 ms Hamming frames every 10 ms."""
    cfg = F.FeatureConfig(kind="logfbank", nfilt=40, nfft=512, winfunc="hamming", preemph=0.97)
    return ModelMetadata(labels=list(LABELS), features=cfg, window_s=window_s, hop_s=hop_s,
                         frames=cfg.frames_for(window_s), normalisation="window_mean", scale=[4.0] * 40)


def speech_centre(x: np.ndarray) -> int:
    """Sample index at the centre of the loud part (frames within SPEECH_RANGE_DB of the loudest)."""
    rms = F.frame_rms(x)
    db = 20 * np.log10(rms + 1e-10)
    idx = np.flatnonzero(db > db.max() - SPEECH_RANGE_DB)
    return int((idx[0] + idx[-1]) / 2 * 160 + 200)


def crop(x: np.ndarray, centre: int, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """`length` samples around `centre`; padded with faint noise where the recording is shorter."""
    start = centre - length // 2
    out = np.zeros(length, np.float32)
    src0, src1 = max(0, start), min(len(x), start + length)
    out[src0 - start : src1 - start] = x[src0:src1]
    floor = (np.max(np.abs(x)) + 1e-6) * 10 ** (-60 / 20)
    g = rng if rng is not None else np.random.default_rng(0)
    return out + (g.standard_normal(length) * floor).astype(np.float32)


def window_features(x: np.ndarray, meta: ModelMetadata) -> np.ndarray:
    """Audio of one window -> normalised model input (frames, bands)."""
    feat = F.features(x, meta.features)[: meta.frames]
    return meta.normalise(feat)


OFFSETS_S = (-1.0, -0.5, 0.5, 1.0)  # other alignments a device's sliding window sees (besides centred)


def save_npz(path: Path, **arrays) -> None:
    """np.savez to a temporary name, then rename: a reader never sees half a cache file, even when two
    processes (parallel tests, two trainings) build the same cache at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


@dataclass
class WindowSet:
    clean: np.ndarray  # (N, frames, bands) speech-centred window per utterance
    shifted: np.ndarray  # (N, len(OFFSETS_S), frames, bands) clean windows moved off-centre
    lowpass: np.ndarray  # (N, frames, bands) the same through a 4 kHz low-pass
    aug: np.ndarray  # (N, n_aug, frames, bands)
    y: np.ndarray  # (N,) label index
    speaker: np.ndarray
    gender: np.ndarray
    corpus: np.ndarray


def _one(args):
    path, seed, n_aug, meta_json, babble_paths, shift_s = args
    meta = ModelMetadata.from_json(meta_json)
    rng = np.random.default_rng(seed)
    x = read_audio(path)
    length = int(meta.window_s * meta.features.samplerate)
    c = speech_centre(x)
    clean = crop(x, c, length)
    lp = augment.lowpass(clean, 4000.0)
    babble = [read_audio(p) for p in babble_paths]
    rate = meta.features.samplerate
    shifted = np.stack([window_features(crop(x, c + int(o * rate), length), meta) for o in OFFSETS_S])
    augs = []
    max_shift = max(1, int(shift_s * rate))
    for _ in range(n_aug):
        # anywhere a device window may sit: speech centred, cut at the start or at the end
        shift = int(rng.integers(-max_shift, max_shift + 1))
        a = augment.random_augment(crop(x, c + shift, length + 4000, rng), rng, babble)
        augs.append(window_features(crop(a, len(a) // 2, length, rng), meta))
    return (window_features(clean, meta), window_features(lp, meta),
            np.stack(augs) if augs else np.zeros((0, meta.frames, meta.features.num_features), np.float32), shifted)


def build(utts: list[Utterance], meta: ModelMetadata, n_aug: int = 2, seed: int = 0, workers: int = 2,
          cache_dir: str | Path | None = "runs/cache", progress: bool = True, shift_s: float = 1.0) -> WindowSet:
    """Compute (or load from cache) the windows of every utterance. Augmented windows are moved up to
    `shift_s` seconds off the speech centre."""
    key = hashlib.sha256(
        json.dumps([[u.path for u in utts], meta.to_json(), n_aug, seed, 3, shift_s]).encode()
    ).hexdigest()[:16]
    cache = Path(cache_dir) / f"windows-{key}.npz" if cache_dir else None
    labels = {name: i for i, name in enumerate(meta.labels)}
    meta_cols = dict(
        y=np.array([labels[u.label] for u in utts]),
        speaker=np.array([u.speaker for u in utts]),
        gender=np.array([u.gender for u in utts]),
        corpus=np.array([u.corpus for u in utts]),
    )
    if cache and cache.exists():
        d = np.load(cache)
        return WindowSet(d["clean"], d["shifted"], d["lowpass"], d["aug"], **meta_cols)
    jobs = [
        (u.path, seed * 100003 + i, n_aug, meta.to_json(), others, shift_s)
        for i, (u, others) in enumerate(zip(utts, babble_partners(utts, seed)))
    ]
    results = run_jobs(_one, jobs, "features", workers, progress, chunksize=8)
    ws = WindowSet(
        np.stack([r[0] for r in results]),
        np.stack([r[3] for r in results]),
        np.stack([r[1] for r in results]),
        np.stack([r[2] for r in results]),
        **meta_cols,
    )
    if cache:
        save_npz(cache, clean=ws.clean, shifted=ws.shifted, lowpass=ws.lowpass, aug=ws.aug)
    return ws


def babble_partners(utts: list[Utterance], seed: int) -> list[list[str]]:
    """For each utterance, up to three other speakers' recordings (its babble noise)."""
    rng = np.random.default_rng(seed)
    return [[utts[j].path for j in rng.choice(len(utts), 3) if utts[j].speaker != u.speaker] for u in utts]


def run_jobs(fn, jobs: list, desc: str, workers: int, progress: bool, chunksize: int = 8) -> list:
    """fn over jobs, in order, on `workers` processes, with a progress bar."""
    bar = _progress(len(jobs), desc, progress)
    results = []
    if workers > 1:
        with Pool(workers) as pool:
            for r in pool.imap(fn, jobs, chunksize=chunksize):
                results.append(r)
                bar.update(1)
    else:
        for j in jobs:
            results.append(fn(j))
            bar.update(1)
    bar.close()
    return results


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="utt", mininterval=2.0)
    except ImportError:
        return _NoBar()


def speaker_folds(
    speakers: np.ndarray, genders: np.ndarray, k: int = 5, seed: int = 0, only_prefix: str = "ravdess-"
) -> list[list[str]]:
    """Group k-fold by speaker: each fold holds out about 1/k of the `only_prefix` speakers, balanced by
    gender. Speakers outside the prefix (TESS's two women) are always in training."""
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(k)]
    pos = 0
    for g in sorted(set(genders.tolist())):
        spk = sorted({s for s, gg in zip(speakers, genders) if gg == g and s.startswith(only_prefix)})
        rng.shuffle(spk)
        for s in spk:
            folds[pos % k].append(s)
            pos += 1
    return [sorted(f) for f in folds]


def random_split(n: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random split of utterances. Speakers are shared between the parts; every report that uses it
    must say "random split (speakers shared)"."""
    idx = np.random.default_rng(seed).permutation(n)
    cut = int(n * (1 - test_fraction))
    return idx[:cut], idx[cut:]
