"""Is it a voice? A second opinion after the energy gate, so that music, a running tap, a vacuum cleaner,
a dog or a door do not reach the emotion model.

The energy gate (pipeline.Gate) passes anything loud that varies. This check looks at how the sound is
voiced: speech has a pitch that wanders (music holds it), syllables at 2-8 per second, its energy in the
100-4000 Hz band, no rumble, and pauses. Nine numbers per window (`window_features`) go into a small
quadratic logistic model (`SpeechCheck`, weights in edge/models/speech-check.json, trained by
tools/speech_check.py on speech and home non-speech; docs/RESULTS.md §11). Frames are computed once, at
8 kHz, and only for windows the energy gate passed: ~1 ms per second of speech on this machine.

When the model's front end is the log-mel window the check was trained with (64 bands), the check also
reads 48 statistics of that window (`mel_stats`: the spectrum's shape, spread and change in 16 coarse
bands; edge/models/speech-check-mel.json, trained by tools/gate_study.py on speech of four corpora over
mixed room floors). It costs no extra front end: the window is the one the model would see.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

RATE = 8000  # the 16 kHz input, decimated by 2 (pitch and the speech band fit)
FRAME = 256  # 32 ms
STEP = 160  # 20 ms
NFFT = 512
LAG_LO, LAG_HI = 20, 115  # autocorrelation lags of a 400..70 Hz pitch
HIGH_LO, HIGH_HI = 8, 20  # lags of a 1000..400 Hz pitch: above speech (whistles, birds, flutes)
_HZ = np.fft.rfftfreq(NFFT, 1 / RATE)


def _bins(lo: float, hi: float, upper_inclusive: bool = True) -> slice:
    inside = np.flatnonzero((_HZ >= lo) & ((_HZ <= hi) if upper_inclusive else (_HZ < hi)))
    return slice(int(inside[0]), int(inside[-1]) + 1)


_TOTAL, _BAND, _LOW = _bins(20, RATE / 2), _bins(100, 3800), _bins(20, 100, upper_inclusive=False)
_WINDOW = np.hanning(FRAME)
NAMES = ("voiced", "stable", "modulation", "band", "low", "pauses", "active", "peak_median", "high_pitch")
ACTIVE_DB = 25.0  # a frame within this of the window's loud frames is active: independent of the room's floor
DEFAULT_CHECK = Path(__file__).parent / "models" / "speech-check.json"
MEL_CHECK = Path(__file__).parent / "models" / "speech-check-mel.json"
MEL_GROUPS = 16  # coarse bands of mel_stats


def frame_rows(x8k: np.ndarray) -> np.ndarray:
    """Per frame of 8 kHz audio: level dB, autocorrelation peak (0..1), pitch Hz, high-pitch flag, and the
    power in the whole range, the speech band and the rumble band. (n, 7)."""
    n = 1 + (x8k.size - FRAME) // STEP if x8k.size >= FRAME else 0
    if n == 0:
        return np.zeros((0, 7))
    frames = np.lib.stride_tricks.sliding_window_view(x8k, FRAME)[: n * STEP : STEP] * _WINDOW
    spec = np.fft.rfft(frames, NFFT)
    power = spec.real ** 2 + spec.imag ** 2
    ac = np.fft.irfft(power, NFFT)[:, : LAG_HI + 1]
    ac /= ac[:, :1] + 1e-12
    lag = LAG_LO + np.argmax(ac[:, LAG_LO:LAG_HI], axis=1)
    peak = ac[np.arange(n), lag]
    high = ac[:, HIGH_LO:HIGH_HI].max(axis=1) >= 0.9 * peak
    total = power[:, _TOTAL].sum(axis=1)
    level = 10 * np.log10(total / (FRAME * NFFT) + 1e-12)
    return np.column_stack([level, peak, RATE / lag, high, total, power[:, _BAND].sum(axis=1),
                            power[:, _LOW].sum(axis=1)])


@lru_cache(maxsize=8)
def _modulation_bands(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Taper and the 2-8 Hz and 0.5-20 Hz bins of an n-frame level envelope (20 ms steps)."""
    hz = np.fft.rfftfreq(n, STEP / RATE)
    return np.hanning(n), (hz >= 2) & (hz <= 8), (hz >= 0.5) & (hz <= 20)


def _percentile(x: np.ndarray, q: float) -> float:
    """np.percentile's default (linear) method, without its overhead (this runs twice a second)."""
    s = np.sort(x)
    pos = (s.size - 1) * q / 100
    lo = int(pos)
    return float(s[lo] if lo + 1 >= s.size else s[lo] + (s[lo + 1] - s[lo]) * (pos - lo))


def window_features(rows: np.ndarray) -> np.ndarray:
    """The nine numbers of NAMES from a window's frame rows."""
    level, peak, f0, high = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3] > 0
    hi = _percentile(level, 95)
    # everything relative to the loud frames, so that a quieter or louder room floor (or digital silence
    # in a file) does not change the numbers
    level = np.maximum(level, hi - 2 * ACTIVE_DB)
    active = level > hi - ACTIVE_DB
    voiced = active & (peak > 0.5)
    voiced_share = voiced.mean() / max(active.mean(), 1e-3)
    high_share = (voiced & high).sum() / max(1, voiced.sum())
    k = 5  # 100 ms later: a held note keeps its pitch within 2 %, a voice rarely does
    held = voiced[:-k] & voiced[k:] & (np.abs(np.log(f0[:-k] / f0[k:])) < 0.02)
    stable = held.sum() / max(1, voiced[:-k].sum())
    # pauses: frames well below the loud ones, as between words (sustained sounds have few)
    pauses = float(np.mean(level < hi - ACTIVE_DB / 2))
    taper, syllables, all_mod = _modulation_bands(level.size)
    env = level - level.mean()  # syllable rate: the level's 2-8 Hz share of 0.5-20 Hz (20 ms steps)
    mod_power = np.abs(np.fft.rfft(env * taper)) ** 2
    modulation = mod_power[syllables].sum() / (mod_power[all_mod].sum() + 1e-12)
    total = rows[:, 4].sum() + 1e-12
    return np.array([voiced_share, stable, modulation, rows[:, 5].sum() / total, rows[:, 6].sum() / total, pauses,
                     active.mean(), np.median(peak[active]) if active.any() else 0.0, high_share])


def decimate(x16k: np.ndarray) -> np.ndarray:
    """16 kHz -> 8 kHz by averaging pairs (a zero at 4 kHz: enough against aliasing for pitch)."""
    x = np.asarray(x16k, np.float64)
    x = x[: x.size // 2 * 2]
    return 0.5 * (x[0::2] + x[1::2])


class VoiceFrames:
    """Frame rows of a stream, each computed once: `rows(audio, end)` gives the rows of the frames inside a
    window's audio that ends at absolute 16 kHz sample `end`, computing only frames not seen before."""

    def __init__(self):
        self.by_index: dict[int, np.ndarray] = {}
        self.next = 0  # first frame index not computed yet

    def rows(self, audio16k: np.ndarray, end: int) -> np.ndarray:
        end8 = end // 2
        start8 = end8 - audio16k.size // 2
        first = -(-start8 // STEP)  # the first frame starting inside the window
        last = (end8 - FRAME) // STEP  # the last frame ending inside it
        if last < first:
            return np.zeros((0, 7))
        new = max(first, self.next)
        if new <= last:  # decimate only the audio of the new frames (pairs stay aligned: offsets are even)
            lo, hi = new * STEP - start8, last * STEP - start8 + FRAME
            computed = frame_rows(decimate(audio16k[2 * lo : 2 * hi]))
            self.by_index.update(zip(range(new, last + 1), computed))
            self.next = last + 1
        for i in [i for i in self.by_index if i < first]:  # windows only move forward
            del self.by_index[i]
        return np.array([self.by_index[i] for i in range(first, last + 1)])


def mel_stats(frames: np.ndarray) -> np.ndarray:
    """48 numbers of a window's log-mel frames (frames, bands): per coarse band, its level relative to the
    window's mean (spectral shape), its spread over time and its mean frame-to-frame change."""
    f = np.asarray(frames, np.float64)
    g = f.reshape(len(f), MEL_GROUPS, -1).mean(2)
    return np.concatenate([g.mean(0) - g.mean(), g.std(0), np.abs(np.diff(g, axis=0)).mean(0)])


class SpeechCheck:
    """P(speech) of a window from its nine numbers: a logistic model on the standardised numbers and their
    squares, and (a "mel" check) on the standardised `mel_stats` of the model's log-mel window. Refuses a
    weights file that does not match NAMES or its own sizes."""

    def __init__(self, path: str | Path = DEFAULT_CHECK):
        d = json.loads(Path(path).read_text())
        if tuple(d["names"]) != NAMES:
            raise ValueError(f"{path}: speech check trained on {d['names']}, this version computes {NAMES}")
        self.mean, self.std = np.array(d["mean"]), np.array(d["std"])
        self.weights = np.array(d["weights"])
        self.threshold = float(d["threshold"])
        mel = d.get("mel")  # {"bands": log-mel bands of the window it reads, "mean": [48], "std": [48]}
        self.mel_bands = int(mel["bands"]) if mel else None
        self.mel_mean, self.mel_std = (np.array(mel["mean"]), np.array(mel["std"])) if mel else (None, None)
        expected = 2 * len(NAMES) + (3 * MEL_GROUPS if mel else 0) + 1
        if self.weights.size != expected:
            raise ValueError(f"{path}: {self.weights.size} weights, expected {expected}")
        self.info = d

    def probability(self, features: np.ndarray, mel: np.ndarray | None = None) -> float:
        """`mel`: mel_stats of the window, required by a mel check (ignored otherwise)."""
        z = (np.asarray(features, np.float64) - self.mean) / self.std
        parts = [z, z * z]
        if self.mel_bands:
            parts.append((np.asarray(mel, np.float64) - self.mel_mean) / self.mel_std)
        logit = float(np.concatenate([*parts, [1.0]]) @ self.weights)
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -50, 50)))


@lru_cache(maxsize=4)
def _check(path: Path) -> SpeechCheck:
    return SpeechCheck(path)


def default_check(features=None) -> SpeechCheck:
    """The shipped check for a model's front end (edge.features.FeatureConfig), read once per process:
    the log-mel check when the model sees the log-mel bands it was trained on, else the nine numbers."""
    if features is not None and features.kind == "logfbank" and MEL_CHECK.exists():
        mel = _check(MEL_CHECK)
        if features.nfilt == mel.mel_bands:
            return mel
    return _check(DEFAULT_CHECK)
