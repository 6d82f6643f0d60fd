"""On-device adaptation: running per-band statistics of the speech this device hears.

A home hears the same few voices through the same microphone for months. Normalising each log-mel
band by the mean and spread of *this device's* speech removes the microphone's colour and the
household's average voice, and keeps what changes from one utterance to the next: the emotion.

`SpeechStats` starts from the training data's statistics (the prior, counted as `prior_s` seconds of
speech) and forgets old speech with a time constant of `memory_s` seconds of speech, so after a while
only this device's speech counts. The trainer uses this same class to simulate a device per speaker,
so training and the device normalise alike.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

FRAME_S = 0.01  # one feature frame per 10 ms
SPEECH_RANGE_DB = 30.0  # frames within this of a block's loudest frame count as speech


def frame_energy(feat: np.ndarray) -> np.ndarray:
    """Total log-mel energy of each frame (natural log of power, like the features)."""
    f = np.asarray(feat, np.float64)
    top = f.max(axis=1, keepdims=True)
    return top[:, 0] + np.log(np.sum(np.exp(f - top), axis=1))


def speech_frames(feat: np.ndarray, range_db: float = SPEECH_RANGE_DB, floor: float | None = None) -> np.ndarray:
    """Bool mask of the frames within `range_db` of the loudest (total log-mel energy) and, given the
    room's `floor` (a frame energy, see RoomFloor), at least ABOVE_FLOOR_DB above it."""
    energy = frame_energy(feat)
    mask = energy > energy.max() - range_db * math.log(10) / 10
    if floor is not None:
        mask &= energy > floor + ABOVE_FLOOR_DB * math.log(10) / 10
    return mask


ABOVE_FLOOR_DB = 12.0


class RoomFloor:
    """The room's noise floor: the quietest 10 % of frames over the last `windows` windows (speech or
    not). Training's clean studio recordings have their floor far below speech, so "within 30 dB of the
    loudest frame" is speech there; in a room whose floor is 25-30 dB under a quiet speaker that rule
    counts the room as speech, which polluted the device statistics (measured on the CV stream at a
    -60 dBFS floor: most segments became "angry")."""

    def __init__(self, windows: int = 60):
        from collections import deque

        self.lows: deque = deque(maxlen=windows)

    def update(self, feat: np.ndarray) -> float:
        self.lows.append(float(np.percentile(frame_energy(feat), 10)))
        return min(self.lows)


class SpeechStats:
    """Per-band running mean and variance of speech frames, with a prior and exponential forgetting."""

    def __init__(self, prior_mean, prior_std, prior_s: float = 30.0, memory_s: float = 1800.0):
        self.prior_mean = np.asarray(prior_mean, np.float64)
        self.prior_var = np.square(np.asarray(prior_std, np.float64))
        self.prior_s, self.memory_s = float(prior_s), float(memory_s)
        self.reset()

    def reset(self) -> None:
        """Back to the prior alone (what a new device starts with)."""
        n = self.prior_s / FRAME_S
        self.weight = n  # frames' worth of evidence, the prior's pseudo-frames included
        self.sum = self.prior_mean * n
        self.sumsq = (self.prior_var + np.square(self.prior_mean)) * n
        self.speech_s = 0.0  # seconds of this device's own speech taken in (not decayed)

    def add(self, frames: np.ndarray) -> None:
        """Take in speech frames (rows of log-mel)."""
        f = np.asarray(frames, np.float64)
        if len(f) == 0:
            return
        decay = math.exp(-len(f) * FRAME_S / self.memory_s)
        self.weight = self.weight * decay + len(f)
        self.sum = self.sum * decay + f.sum(axis=0)
        self.sumsq = self.sumsq * decay + np.square(f).sum(axis=0)
        self.speech_s += len(f) * FRAME_S

    @property
    def mean(self) -> np.ndarray:
        return self.sum / self.weight

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.sumsq / self.weight - np.square(self.mean), 1e-4))

    # persistence: a restart keeps what the device has learnt
    def to_dict(self) -> dict:
        return {"format": 1, "bands": len(self.sum), "weight": self.weight, "sum": self.sum.tolist(),
                "sumsq": self.sumsq.tolist(), "speech_s": self.speech_s, "memory_s": self.memory_s,
                "prior_mean": self.prior_mean.tolist()}

    def load_dict(self, d: dict) -> bool:
        """Take over saved statistics if they belong to the same front end and prior; else keep the prior."""
        if d.get("format") != 1 or d.get("bands") != len(self.sum):
            return False
        if not np.allclose(d.get("prior_mean", []), self.prior_mean, atol=1e-6):
            return False  # saved for another model: start again from this model's prior
        self.weight, self.speech_s = float(d["weight"]), float(d["speech_s"])
        self.sum, self.sumsq = np.asarray(d["sum"], np.float64), np.asarray(d["sumsq"], np.float64)
        return True

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict()))
        os.replace(tmp, path)  # never a half-written file

    def load(self, path: str | Path) -> bool:
        try:
            return self.load_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return False


class VoiceGroupStats:
    """A SpeechStats per voice group (edge/voicegroups.py), for a device that several voices share: `use`
    picks the group whose statistics normalise the next window and learn from its speech. Reads like one
    SpeechStats to the classifier (mean, std) and to the service (save, load, speech_s)."""

    def __init__(self, prior_mean, prior_std, prior_s: float = 30.0, memory_s: float = 1800.0, groups: int = 2):
        self.groups = [SpeechStats(prior_mean, prior_std, prior_s, memory_s) for _ in range(groups)]
        self.active = 0

    def use(self, group: int | None) -> None:
        """The group of the next window; None (too little speech to tell) keeps the last one."""
        if group is not None:
            self.active = group

    @property
    def mean(self) -> np.ndarray:
        return self.groups[self.active].mean

    @property
    def std(self) -> np.ndarray:
        return self.groups[self.active].std

    @property
    def speech_s(self) -> float:
        return sum(g.speech_s for g in self.groups)

    @property
    def speech_s_by_group(self) -> list[float]:
        return [g.speech_s for g in self.groups]

    def add(self, frames: np.ndarray) -> None:
        self.groups[self.active].add(frames)

    def to_dict(self) -> dict:
        return {"format": 2, "groups": [g.to_dict() for g in self.groups], "active": self.active,
                "speech_s": self.speech_s}  # the total, for a reader of the file

    def load_dict(self, d: dict) -> bool:
        """Saved groups, or a single set saved before groups (format 1): every group starts from it."""
        if d.get("format") == 1:
            saved = [d] * len(self.groups)
        elif d.get("format") == 2 and len(d.get("groups", [])) == len(self.groups):
            saved = d["groups"]
        else:
            return False
        fresh = [SpeechStats(g.prior_mean, np.sqrt(g.prior_var), g.prior_s, g.memory_s) for g in self.groups]
        if not all(g.load_dict(s) for g, s in zip(fresh, saved)):
            return False  # all or nothing: another model's or front end's statistics
        self.groups = fresh
        self.active = int(d.get("active", 0)) % len(self.groups)
        return True

    save = SpeechStats.save
    load = SpeechStats.load
