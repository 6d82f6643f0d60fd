"""Fit and check the device's voice-group classifier (edge/voicegroups.py) on the corpora's voices.

The features are the edge's own (`voice_shape`, `pitch_percentiles`), computed per utterance: the shape
from the feature cache's raw log-mel frames and speech mask, the pitch from the clean audio (pitch does
not depend on the channel; the shape does, so the augmented copies' shapes are fitted too)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edge import voicing
from edge.audio import read_audio
from edge.voicegroups import VoiceGroups, fit, group_features, pitch_percentiles, voice_shape

from .corpora import LABELS
from .crops import Corpus


def utterance_pitch(c: Corpus, cache_dir: Path | None = None) -> np.ndarray:
    """(utterances, 3) log pitch percentiles of every utterance's clean audio (NaN: too little voicing);
    cached beside the feature cache (90 s for the four corpora)."""
    key = hashlib.sha256(json.dumps([u.path for u in c.utts]).encode()).hexdigest()[:16]
    path = Path(cache_dir or "runs/cache") / f"pitch-{key}.npy"
    if path.exists():
        return np.load(path)
    out = np.full((len(c.utts), 3), np.nan)
    for i, u in enumerate(c.utts):
        q = pitch_percentiles(voicing.frame_rows(voicing.decimate(read_audio(u.path))))
        if q is not None:
            out[i] = q
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


_TABLES: dict = {}


def feature_table(c: Corpus, pitch: np.ndarray, copy: int = 0) -> np.ndarray:
    """Every utterance's feature row in one copy, NaN where it has none (computed once per corpus and copy)."""
    key = (id(c), copy)  # the corpus is stored with its table, so its id is not reused while cached
    if key not in _TABLES:
        n = c.sp.get(0, copy).shape[1] + pitch.shape[1]
        table = np.full((len(c.y), n), np.nan)
        for i in range(len(c.y)):
            x = group_features(voice_shape(c.sp.get(i, copy), c.sp.speech_mask(i, copy)),
                               None if np.isnan(pitch[i]).any() else pitch[i])
            if x is not None:
                table[i] = x
        _TABLES[key] = (c, table)
    return _TABLES[key][1]


def feature_rows(c: Corpus, idx: np.ndarray, pitch: np.ndarray, copy: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows of the utterances `idx` that have them, and which of `idx` those are."""
    table = feature_table(c, pitch, copy)[idx]
    ok = np.isfinite(table).all(axis=1)
    return table[ok], np.asarray(idx)[ok]


def fit_groups(c: Corpus, idx: np.ndarray, pitch: np.ndarray, features: dict, copies=None,
               info: dict | None = None) -> VoiceGroups:
    """The classifier fitted on utterances `idx` of known gender (men = the low group), in `copies` of each
    (default: every copy, so that a microphone's colour does not decide the group)."""
    idx = idx[np.isin(c.gender[idx], ["male", "female"])]
    xs, ys = [], []
    for copy in range(c.sp.copies) if copies is None else copies:
        x, kept = feature_rows(c, idx, pitch, copy)
        xs.append(x)
        ys.append(c.gender[kept] == "male")
    return fit(np.concatenate(xs), np.concatenate(ys), features, info=info)


def assign(c: Corpus, idx: np.ndarray, pitch: np.ndarray, vg: VoiceGroups, copy: int = 0) -> dict[int, int]:
    """utterance -> group (0 low, 1 high); utterances too short to say are left out (the device then keeps
    the group it had)."""
    x, kept = feature_rows(c, idx, pitch, copy)
    return {int(i): vg.group(row) for i, row in zip(kept, x)}


def accuracy_by_speaker_folds(c: Corpus, idx: np.ndarray, pitch: np.ndarray, features: dict, folds: int = 5,
                              seed: int = 0) -> dict:
    """Speaker-independent check: each fold's voices grouped by a classifier fitted on the others'. Share of
    utterances in their gender's group, overall, per corpus and per emotion (emotion must not decide it)."""
    idx = idx[np.isin(c.gender[idx], ["male", "female"])]
    speakers = np.array(sorted(set(c.speaker[idx].tolist())))
    part = np.random.default_rng(seed).permutation(len(speakers)) % folds
    right: dict[int, bool] = {}
    for k in range(folds):
        held = np.isin(c.speaker[idx], speakers[part == k])
        vg = fit_groups(c, idx[~held], pitch, features)
        for i, g in assign(c, idx[held], pitch, vg).items():
            right[i] = (g == 0) == (c.gender[i] == "male")
    ids = np.array(list(right))
    ok = np.array([right[i] for i in ids])
    out = {"utterances": int(len(ids)), "right": round(float(ok.mean()), 4), "by_corpus": {}, "by_label": {}}
    for name, key in (("by_corpus", c.corpus), ("by_label", np.array(LABELS)[c.y])):
        for v in sorted(set(key[ids].tolist())):
            out[name][v] = round(float(ok[key[ids] == v].mean()), 4)
    return out
