"""The one feature front end, numpy only.

The trainer (converter/) and the device (edge/) both import this module, so the numbers a model was
trained on are the numbers it sees on the Pi.

`mfcc`, `fbank`, `logfbank`, `delta`, `get_filterbanks` and `lifter` follow python_speech_features 0.6
(same signatures, same defaults, same numbers to float64 rounding), written vectorised: there is no
Python loop per frame. `MfccStream` computes the same frames incrementally for a live microphone, so a
sliding window never recomputes the frames it overlaps.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

import numpy as np

# --------------------------------------------------------------------------------------------------
# Settings


WINDOW_FUNCTIONS: dict[str, Callable[[int], np.ndarray]] = {
    "rect": lambda n: np.ones((n,)),  # python_speech_features' default
    "hamming": np.hamming,
    "hann": np.hanning,
}


class FeatureConfigError(ValueError):
    """A feature setting that is missing, unknown or out of range."""


@dataclass(frozen=True)
class FeatureConfig:
    """Every setting of the front end. It travels inside the model file as JSON.

    kind:        "mfcc" (cepstra, `numcep` per frame) or "logfbank" (`nfilt` log mel energies)
    samplerate:  Hz of the signal (the device resamples everything to this)
    winlen:      frame length in seconds (0.025 = 25 ms)
    winstep:     frame step in seconds (0.01 = 10 ms)
    numcep:      cepstra kept (mfcc only)
    nfilt:       mel filters
    nfft:        FFT size in samples
    lowfreq:     lowest filter edge in Hz
    highfreq:    highest filter edge in Hz; None means samplerate / 2
    preemph:     pre-emphasis coefficient, 0 for none
    ceplifter:   cepstral lifter, 0 for none (mfcc only)
    appendEnergy: replace cepstrum 0 with the log frame energy (mfcc only)
    winfunc:     analysis window name: "rect", "hamming" or "hann"
    """

    kind: str = "mfcc"
    samplerate: int = 16000
    winlen: float = 0.025
    winstep: float = 0.01
    numcep: int = 13
    nfilt: int = 26
    nfft: int = 512
    lowfreq: float = 0.0
    highfreq: float | None = None
    preemph: float = 0.97
    ceplifter: int = 22
    appendEnergy: bool = True
    winfunc: str = "rect"

    def __post_init__(self) -> None:
        if self.kind not in ("mfcc", "logfbank"):
            raise FeatureConfigError(f"kind must be 'mfcc' or 'logfbank', got {self.kind!r}")
        if self.winfunc not in WINDOW_FUNCTIONS:
            raise FeatureConfigError(f"winfunc must be one of {sorted(WINDOW_FUNCTIONS)}, got {self.winfunc!r}")
        if self.samplerate <= 0 or self.winlen <= 0 or self.winstep <= 0:
            raise FeatureConfigError("samplerate, winlen and winstep must be positive")
        if self.frame_len > self.nfft:
            raise FeatureConfigError(f"nfft ({self.nfft}) is shorter than a frame ({self.frame_len} samples)")
        high = self.highfreq if self.highfreq else self.samplerate / 2
        if not 0 <= self.lowfreq < high <= self.samplerate / 2:
            raise FeatureConfigError(f"need 0 <= lowfreq < highfreq <= samplerate/2, got {self.lowfreq}, {high}")
        if self.kind == "mfcc" and not 0 < self.numcep <= self.nfilt:
            raise FeatureConfigError(f"numcep must be in 1..nfilt ({self.nfilt}), got {self.numcep}")

    @property
    def frame_len(self) -> int:
        return round_half_up(self.winlen * self.samplerate)

    @property
    def frame_step(self) -> int:
        return round_half_up(self.winstep * self.samplerate)

    @property
    def num_features(self) -> int:
        return self.numcep if self.kind == "mfcc" else self.nfilt

    def frames_for(self, seconds: float) -> int:
        """Complete frames in `seconds` of audio (what a window of that length holds)."""
        samples = round_half_up(seconds * self.samplerate)
        return 0 if samples < self.frame_len else 1 + (samples - self.frame_len) // self.frame_step

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise FeatureConfigError(f"unknown feature setting(s) {unknown}; expected some of {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> FeatureConfig:
        return cls.from_dict(json.loads(text))


def round_half_up(number: float) -> int:
    """Round like python_speech_features (0.5 goes up), so frame sizes agree exactly."""
    return int(Decimal(number).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


# --------------------------------------------------------------------------------------------------
# Building blocks (python_speech_features.sigproc, vectorised)


def preemphasis(signal: np.ndarray, coeff: float = 0.95) -> np.ndarray:
    """y[0] = x[0], y[n] = x[n] - coeff * x[n-1]."""
    signal = np.asarray(signal, dtype=np.float64)
    return np.append(signal[:1], signal[1:] - coeff * signal[:-1])


def num_frames(slen: int, frame_len: int, frame_step: int) -> int:
    """Frames python_speech_features makes of `slen` samples (the last one zero-padded)."""
    if slen <= frame_len:
        return 1
    return 1 + int(math.ceil((1.0 * slen - frame_len) / frame_step))


def framesig(signal: np.ndarray, frame_len: int, frame_step: int, window: np.ndarray | None) -> np.ndarray:
    """Split into overlapping frames (zero-padding the end) and apply the window: (frames, frame_len).
    window None = rectangular: the frames are returned as a read-only view, nothing is copied."""
    n = num_frames(len(signal), frame_len, frame_step)
    padlen = (n - 1) * frame_step + frame_len
    padded = np.concatenate((signal, np.zeros(padlen - len(signal))))
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_len)[::frame_step]
    return frames if window is None else frames * window


def powspec(frames: np.ndarray, nfft: int) -> np.ndarray:
    """Power spectrum of each frame: |FFT|^2 / nfft, (frames, nfft//2 + 1)."""
    spec = np.fft.rfft(frames, nfft)
    # |z|^2 as re*re + im*im in one pass over the (re, im) pairs: no square root then square, no
    # temporaries (equal to psf's |z|**2 within rounding)
    pairs = spec.view(np.float64).reshape(*spec.shape, 2)
    power = np.einsum("...k,...k->...", pairs, pairs)
    power *= 1.0 / nfft
    return power


def hz2mel(hz):
    return 2595 * np.log10(1 + hz / 700.0)


def mel2hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


@lru_cache(maxsize=16)
def _filterbank_cached(nfilt: int, nfft: int, samplerate: int, lowfreq: float, highfreq: float) -> np.ndarray:
    melpoints = np.linspace(hz2mel(lowfreq), hz2mel(highfreq), nfilt + 2)
    bins = np.floor((nfft + 1) * mel2hz(melpoints) / samplerate)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    i = np.arange(nfft // 2 + 1)
    for j in range(nfilt):  # once per filter, at start-up: not per frame
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        rising = (i >= lo) & (i < mid)
        falling = (i >= mid) & (i < hi)
        fb[j, rising] = (i[rising] - lo) / (mid - lo)
        fb[j, falling] = (hi - i[falling]) / (hi - mid)
    fb.setflags(write=False)
    return fb


def get_filterbanks(nfilt=20, nfft=512, samplerate=16000, lowfreq=0, highfreq=None) -> np.ndarray:
    """Triangular mel filters, (nfilt, nfft//2 + 1), exactly as python_speech_features builds them."""
    highfreq = highfreq or samplerate / 2
    if highfreq > samplerate / 2:
        raise FeatureConfigError("highfreq is greater than samplerate/2")
    return _filterbank_cached(int(nfilt), int(nfft), int(samplerate), float(lowfreq), float(highfreq))


@lru_cache(maxsize=16)
def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix (what scipy.fftpack.dct(type=2, norm='ortho') computes)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[0] /= np.sqrt(2.0)
    m = m.T.copy()  # (n_in, n_out), so features @ m
    m.setflags(write=False)
    return m


def lifter(cepstra: np.ndarray, L: int = 22) -> np.ndarray:
    """Sinusoidal lifter: raises the magnitude of the higher cepstra."""
    if L > 0:
        n = np.arange(np.shape(cepstra)[1])
        return (1 + (L / 2.0) * np.sin(np.pi * n / L)) * cepstra
    return cepstra


# --------------------------------------------------------------------------------------------------
# python_speech_features-compatible API


def _window(winfunc, frame_len: int) -> np.ndarray | None:
    """The analysis window as an array, or None for the rectangular one (multiplying by 1 is a copy)."""
    if isinstance(winfunc, str):
        winfunc = WINDOW_FUNCTIONS[winfunc]
    w = np.asarray(winfunc(frame_len), dtype=np.float64)
    return None if np.all(w == 1.0) else w


@lru_cache(maxsize=16)
def _fbank_and_energy_matrix(fb_key: tuple) -> np.ndarray:
    """[filters | ones]: the filterbank energies and the frame energy in one matrix product."""
    fb = get_filterbanks(*fb_key)
    m = np.hstack([fb.T, np.ones((fb.shape[1], 1))])
    m.setflags(write=False)
    return m


def _spectra_to_fbank(pspec: np.ndarray, fb_and_ones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = pspec @ fb_and_ones
    both[both == 0] = np.finfo(float).eps  # log(0) guard, as psf (exact zeros only)
    return both[:, :-1], both[:, -1]


def fbank(signal, samplerate=16000, winlen=0.025, winstep=0.01, nfilt=26, nfft=512, lowfreq=0,
          highfreq=None, preemph=0.97, winfunc=WINDOW_FUNCTIONS["rect"]):
    """Mel filterbank energies and the total energy of each frame: ((frames, nfilt), (frames,))."""
    highfreq = highfreq or samplerate / 2
    signal = preemphasis(signal, preemph)
    frame_len, frame_step = round_half_up(winlen * samplerate), round_half_up(winstep * samplerate)
    frames = framesig(signal, frame_len, frame_step, _window(winfunc, frame_len))
    pspec = powspec(frames, nfft)
    fb_and_ones = _fbank_and_energy_matrix((int(nfilt), int(nfft), int(samplerate), float(lowfreq), float(highfreq)))
    return _spectra_to_fbank(pspec, fb_and_ones)


def logfbank(signal, samplerate=16000, winlen=0.025, winstep=0.01, nfilt=26, nfft=512, lowfreq=0,
             highfreq=None, preemph=0.97, winfunc=WINDOW_FUNCTIONS["rect"]):
    """Log mel filterbank energies, (frames, nfilt)."""
    feat, _ = fbank(signal, samplerate, winlen, winstep, nfilt, nfft, lowfreq, highfreq, preemph, winfunc)
    return np.log(feat)


@lru_cache(maxsize=16)
def _liftered_dct(n_in: int, n_out: int, ceplifter: int) -> np.ndarray:
    """The DCT matrix with the lifter folded into its columns: one matrix product for both."""
    m = lifter(np.array(_dct_matrix(n_in, n_out)), ceplifter)
    m.setflags(write=False)
    return m


def _cepstra(feat: np.ndarray, energy: np.ndarray, numcep: int, ceplifter: int, appendEnergy: bool):
    cep = np.log(feat) @ _liftered_dct(feat.shape[1], numcep, ceplifter)
    if appendEnergy:
        cep[:, 0] = np.log(energy)  # cepstrum 0 replaced by the log frame energy, as psf
    return cep


def mfcc(signal, samplerate=16000, winlen=0.025, winstep=0.01, numcep=13, nfilt=26, nfft=512, lowfreq=0,
         highfreq=None, preemph=0.97, ceplifter=22, appendEnergy=True, winfunc=WINDOW_FUNCTIONS["rect"]):
    """Mel-frequency cepstral coefficients, (frames, numcep).

    signal: 1-D audio; samplerate: Hz; winlen / winstep: seconds (25 ms / 10 ms); numcep: cepstra kept;
    nfilt: mel filters; nfft: FFT size; lowfreq / highfreq: filter range in Hz (None = samplerate/2);
    preemph: pre-emphasis coefficient; ceplifter: lifter L (0 = off); appendEnergy: cepstrum 0 is the
    log frame energy; winfunc: a function n -> window of n samples (psf default: rectangular).
    """
    feat, energy = fbank(signal, samplerate, winlen, winstep, nfilt, nfft, lowfreq, highfreq, preemph, winfunc)
    return _cepstra(feat, energy, numcep, ceplifter, appendEnergy)


def delta(feat: np.ndarray, N: int) -> np.ndarray:
    """Delta coefficients over +-N frames (edges repeated), as python_speech_features."""
    if N < 1:
        raise ValueError("N must be an integer >= 1")
    denominator = 2 * sum(i**2 for i in range(1, N + 1))
    padded = np.pad(feat, ((N, N), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * N + 1, axis=0)  # (T, F, 2N+1)
    return windows @ np.arange(-N, N + 1, dtype=np.float64) / denominator


def frame_rms(signal, samplerate=16000, winlen=0.025, winstep=0.01) -> np.ndarray:
    """Root-mean-square amplitude of each (unwindowed, zero-padded) frame."""
    fl, fs = round_half_up(winlen * samplerate), round_half_up(winstep * samplerate)
    frames = framesig(np.asarray(signal, np.float64), fl, fs, None)
    return np.sqrt(np.mean(np.square(frames), axis=1))


def frame_zcr(signal, samplerate=16000, winlen=0.025, winstep=0.01) -> np.ndarray:
    """Zero-crossing rate of each frame: sign changes / (frame_len - 1)."""
    fl, fs = round_half_up(winlen * samplerate), round_half_up(winstep * samplerate)
    frames = framesig(np.asarray(signal, np.float64), fl, fs, None)
    signs = np.signbit(frames)
    return np.count_nonzero(signs[:, 1:] != signs[:, :-1], axis=1) / (fl - 1)


def normalise(feat: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None,
              eps: float = 1e-8) -> np.ndarray:
    """Per-coefficient normalisation of (frames, coeffs).

    With no statistics it is per-utterance (or per-window): each coefficient's own mean and standard
    deviation over the frames given. With `mean`/`std` (global statistics from training data) those are
    used instead.
    """
    feat = np.asarray(feat, dtype=np.float64)
    if mean is None:
        mean = feat.mean(axis=0)
    if std is None:
        std = feat.std(axis=0)
    return (feat - mean) / (np.asarray(std) + eps)


def features(signal: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Batch features of a whole signal under `config`: (frames, config.num_features)."""
    c = config
    if c.kind == "mfcc":
        return mfcc(signal, c.samplerate, c.winlen, c.winstep, c.numcep, c.nfilt, c.nfft, c.lowfreq,
                    c.highfreq, c.preemph, c.ceplifter, c.appendEnergy, WINDOW_FUNCTIONS[c.winfunc])
    return logfbank(signal, c.samplerate, c.winlen, c.winstep, c.nfilt, c.nfft, c.lowfreq, c.highfreq,
                    c.preemph, WINDOW_FUNCTIONS[c.winfunc])


# --------------------------------------------------------------------------------------------------
# Streaming


class MfccStream:
    """Incremental features: feed audio in chunks of any size, get each frame once, when complete.

    `push(chunk)` returns the frames that became complete, (n, num_features), exactly the frames
    `features()` computes on the concatenated signal. `flush()` returns the zero-padded last frame(s)
    that the batch function adds at the end, so push(...)* + flush() == features(whole signal).
    Works for kind "mfcc" and "logfbank" (the name is the usual one for this kind of object).
    """

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        self.config = config
        self._frame_len = config.frame_len
        self._step = config.frame_step
        self._window = _window(config.winfunc, self._frame_len)
        high = config.highfreq or config.samplerate / 2
        get_filterbanks(config.nfilt, config.nfft, config.samplerate, config.lowfreq, high)  # checks the range
        self._fb_and_ones = _fbank_and_energy_matrix((config.nfilt, config.nfft, config.samplerate,
                                                      float(config.lowfreq), float(high)))
        self.reset()

    def reset(self) -> None:
        self._pending = np.zeros(0)  # pre-emphasised samples not yet fully consumed by frames
        self._fed: list[np.ndarray] = []  # raw audio fed but not yet pre-emphasised or computed
        self._last_sample: float | None = None  # the raw sample before the first one in _fed
        self.samples_seen = 0
        self.frames_emitted = 0

    def _frames_to_features(self, frames: np.ndarray) -> np.ndarray:
        c = self.config
        windowed = frames if self._window is None else frames * self._window
        feat, energy = _spectra_to_fbank(powspec(windowed, c.nfft), self._fb_and_ones)
        if c.kind == "logfbank":
            return np.log(feat)
        return _cepstra(feat, energy, c.numcep, c.ceplifter, c.appendEnergy)

    def feed(self, chunk: np.ndarray) -> None:
        """Take audio without computing anything yet (cheap: for many tiny chunks, call `compute()`
        only when the frames are needed, e.g. once per analysis hop)."""
        if len(chunk):
            self._fed.append(chunk)
            self.samples_seen += np.size(chunk)

    def _emphasise_fed(self) -> None:
        """Pre-emphasise everything fed since the last compute, in one pass (as batch does)."""
        x = np.concatenate(self._fed, axis=None).astype(np.float64, copy=False)
        self._fed = []
        emphasised = np.empty_like(x)
        emphasised[1:] = x[1:] - self.config.preemph * x[:-1]
        # the very first sample of the stream is kept as is, as in batch
        emphasised[0] = x[0] if self._last_sample is None else x[0] - self.config.preemph * self._last_sample
        self._last_sample = float(x[-1])
        self._pending = np.concatenate([self._pending, emphasised])

    def compute(self) -> np.ndarray:
        """Features of every frame completed by the audio fed so far, (n, num_features)."""
        if self._fed:
            self._emphasise_fed()
        buf = self._pending
        if buf.size < self._frame_len:
            return np.zeros((0, self.config.num_features))
        n = 1 + (buf.size - self._frame_len) // self._step
        frames = np.lib.stride_tricks.sliding_window_view(buf, self._frame_len)[: n * self._step : self._step]
        out = self._frames_to_features(frames)
        self._pending = buf[n * self._step :]
        self.frames_emitted += n
        return out

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """feed() then compute(): the frames that became complete with this chunk."""
        self.feed(chunk)
        return self.compute()

    def flush(self) -> np.ndarray:
        """The zero-padded tail frames the batch function would add; then the stream is reset."""
        out_now = self.compute()
        total = num_frames(self.samples_seen, self._frame_len, self._step) if self.samples_seen else 0
        missing = total - self.frames_emitted
        out = out_now
        if missing > 0:
            need = (missing - 1) * self._step + self._frame_len
            buf = np.concatenate((self._pending, np.zeros(max(0, need - self._pending.size))))
            frames = np.lib.stride_tricks.sliding_window_view(buf, self._frame_len)[: missing * self._step : self._step]
            out = np.concatenate((out_now, self._frames_to_features(frames)))
        self.reset()
        return out
