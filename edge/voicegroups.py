"""Voice groups: one device, several voices, a set of speech statistics per group.

A home's device hears everyone in it through one microphone. With one set of running statistics
(edge/adapt.py) a household of men and women is normalised by their mix: a man's voice then looks
unusually low and dark to the model, whatever his emotion (measured in the CV: one device for two men
and two women costs 3.4 points of clip UAR, men 5). Keeping two sets, one per *voice group* (roughly:
lower and higher voices), gave the model of that time most of that back, provided an utterance is put
in its group whatever its emotion. A model trained with a frequency warp (the default since 2026-12-07)
cares less and gains less, so `[adaptation] voice_groups` is off by default (docs/RESULTS.md §10).

The group comes from a logistic regression on two things emotion moves little: the long-term spectral
shape of the speech (band means minus their mean: vocal tract length) and the low percentiles of its
voiced pitch. It is fitted by `ser-convert voice-groups` on every voice of the training corpora and
stored beside the model (edge/models/voice-groups.json). Nothing about it leaves the device: it only
chooses which statistics normalise a window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .voicing import ACTIVE_DB

DEFAULT_GROUPS = Path(__file__).parent / "models" / "voice-groups.json"
GROUPS = ("low", "high")
PITCH_PERCENTILES = (10, 20, 50)
MIN_SPEECH_FRAMES = 50  # 0.5 s of speech frames for a shape
MIN_VOICED_FRAMES = 5  # 0.1 s of voiced 20 ms frames for a pitch


def voice_shape(frames: np.ndarray, speech: np.ndarray) -> np.ndarray | None:
    """Long-term spectral shape: the speech frames' band means minus their mean (the level is not a voice).
    frames: raw log-mel frames (n, bands) as the front end computes them; speech: their speech mask."""
    f = np.asarray(frames, np.float64)[np.asarray(speech, bool)]
    if len(f) < MIN_SPEECH_FRAMES:
        return None
    m = f.mean(axis=0)
    return m - m.mean()


def pitch_percentiles(voice_rows: np.ndarray) -> np.ndarray | None:
    """Log of the 10th, 20th and 50th percentile of the voiced frames' pitch. voice_rows: edge.voicing
    frame_rows of the same audio (level dB, autocorrelation peak, pitch Hz, ...); voiced = within ACTIVE_DB
    of the loud frames and periodic, as the voice check counts them."""
    if len(voice_rows) == 0:
        return None
    level, peak, f0 = voice_rows[:, 0], voice_rows[:, 1], voice_rows[:, 2]
    voiced = (level > np.percentile(level, 95) - ACTIVE_DB) & (peak > 0.5)
    if voiced.sum() < MIN_VOICED_FRAMES:
        return None
    return np.log(np.percentile(f0[voiced], PITCH_PERCENTILES))


def group_features(shape: np.ndarray | None, pitch: np.ndarray | None) -> np.ndarray | None:
    """The classifier's input, or None when there is too little speech to say."""
    return None if shape is None or pitch is None else np.concatenate([shape, pitch])


@dataclass(frozen=True)
class VoiceGroups:
    """A fitted classifier: P(low voice) = sigmoid(((x - mean) / scale) . weights + bias)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    bands: int
    features: dict  # the front end's FeatureConfig (to_dict) the shapes were computed with
    info: dict  # what it was fitted on and how well it did (`ser-convert voice-groups`)

    def p_low(self, x: np.ndarray) -> float:
        z = float(((x - self.mean) / self.scale) @ self.weights + self.bias)
        return 1.0 / (1.0 + np.exp(-z))

    def group(self, x: np.ndarray | None) -> int | None:
        """0 (low) or 1 (high); None when the features could not be computed."""
        return None if x is None else (0 if self.p_low(x) >= 0.5 else 1)

    def to_dict(self) -> dict:
        return {"format": 1, "groups": list(GROUPS), "bands": self.bands, "features": self.features,
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "bias": self.bias, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict) -> VoiceGroups:
        missing = [k for k in ("bands", "features", "mean", "scale", "weights", "bias") if k not in d]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        n = d["bands"] + len(PITCH_PERCENTILES)
        arrays = [np.asarray(d[k], np.float64) for k in ("mean", "scale", "weights")]
        if d.get("format") != 1 or any(a.shape != (n,) for a in arrays):
            raise ValueError(f"not a format-1 voice-group file for {d.get('bands')} bands")
        return cls(*arrays, float(d["bias"]), int(d["bands"]), dict(d["features"]), dict(d.get("info", {})))

    @classmethod
    def load(cls, path: str | Path = DEFAULT_GROUPS) -> VoiceGroups:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: cannot read voice groups: {e}") from e


def fit(x: np.ndarray, low: np.ndarray, features: dict, l2: float = 1e-2, steps: int = 3000, rate: float = 0.5,
        info: dict | None = None) -> VoiceGroups:
    """Logistic regression of `low` (bool per row of x), both groups weighted equally, by gradient descent
    on standardised features (67 numbers: no solver needed)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(low, np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / scale
    weight = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        g = (p - y) * weight
        w -= rate * (z.T @ g / len(y) + l2 * w)
        b -= rate * float(g.mean())
    return VoiceGroups(mean, scale, w, b, x.shape[1] - len(PITCH_PERCENTILES), features, info or {})


def for_model(meta, path: str | Path = DEFAULT_GROUPS) -> tuple[VoiceGroups | None, str]:
    """The voice groups for a model's front end, or None and why not (the device then keeps one set)."""
    if meta.normalisation != "device":
        return None, "the model normalises per window"
    try:
        vg = VoiceGroups.load(path)
    except ValueError as e:
        return None, str(e)
    if vg.features != meta.features.to_dict():
        return None, f"{path} was fitted for another front end ({vg.bands} bands)"
    return vg, ""
