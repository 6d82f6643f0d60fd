"""Waveform augmentation for training: noise, gain, time shift, speed, recording chain, reverberation.

All functions take and return float32 mono at 16 kHz and draw from the numpy Generator they are given,
so a seed reproduces a data set exactly. The recording-chain augmentation exists because a model
trained on studio recordings otherwise collapses on a cheap microphone.
"""

from __future__ import annotations

import numpy as np

from edge.audio import resample

RATE = 16000


def add_noise(x: np.ndarray, rng: np.random.Generator, snr_db: float, kind: str = "white",
              babble: list[np.ndarray] | None = None) -> np.ndarray:
    """Add white, pink or babble noise (a sum of other utterances) at `snr_db`."""
    n = len(x)
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind == "pink":  # 1/f power: shape white noise in the frequency domain
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        noise = np.fft.irfft(spec / np.sqrt(f), n)
    elif kind == "babble" and babble:
        noise = np.zeros(n)
        for _ in range(3):
            b = babble[rng.integers(len(babble))]
            b = np.resize(b, n) if len(b) < n else b[rng.integers(0, len(b) - n + 1):][:n]
            noise += b / (np.std(b) + 1e-9)
    else:
        noise = rng.standard_normal(n)
    p_sig = np.mean(np.square(x)) + 1e-12
    p_noise = np.mean(np.square(noise)) + 1e-12
    return (x + noise * np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))).astype(np.float32)


def gain(x: np.ndarray, db: float) -> np.ndarray:
    return np.clip(x * 10 ** (db / 20), -1.0, 1.0).astype(np.float32)


def speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (pitch and tempo together), by resampling."""
    return resample(x, int(round(RATE * factor)), RATE)


def recording_chain(x: np.ndarray, rng: np.random.Generator, lowpass_hz: float | None = None,
                    highpass_hz: float | None = None, eq_db: float = 6.0) -> np.ndarray:
    """A different microphone: a random smooth EQ (+-eq_db), optional band limits, in one FFT."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / RATE)
    # smooth random EQ: a few random gains at log-spaced points, interpolated
    pts = np.geomspace(50, RATE / 2, 8)
    eq = np.interp(np.log(np.maximum(f, 1)), np.log(pts), rng.uniform(-eq_db, eq_db, len(pts)))
    response = 10 ** (eq / 20)
    if lowpass_hz:  # 4th-order-like roll-off
        response = response / np.sqrt(1 + (f / lowpass_hz) ** 8)
    if highpass_hz:
        response = response / np.sqrt(1 + (highpass_hz / np.maximum(f, 1e-3)) ** 4)
    return np.fft.irfft(spec * response, len(x)).astype(np.float32)


def lowpass(x: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """A fixed band limit (the channel-shift evaluation uses 4 kHz)."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / RATE)
    return np.fft.irfft(spec / np.sqrt(1 + (f / cutoff_hz) ** 8), len(x)).astype(np.float32)


def synthetic_rir(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A room impulse response: a direct path plus exponentially decaying noise (reverberation time rt60)."""
    n = int(rt60 * RATE)
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[: int(0.003 * RATE)] = 0  # a few ms before the first reflections
    rir = 0.3 * tail / (np.sqrt(np.sum(tail**2)) + 1e-9)
    rir[0] = 1.0
    return rir


def reverb(x: np.ndarray, rng: np.random.Generator, rt60: float) -> np.ndarray:
    rir = synthetic_rir(rng, rt60)
    n = len(x) + len(rir) - 1
    nfft = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(rir, nfft), nfft)[: len(x)]
    return (y * (np.std(x) / (np.std(y) + 1e-9))).astype(np.float32)


def random_augment(x: np.ndarray, rng: np.random.Generator, babble: list[np.ndarray] | None = None) -> np.ndarray:
    """One random combination of everything above, as the training recipe uses it."""
    if rng.random() < 0.5:
        x = speed(x, float(rng.choice([0.9, 0.95, 1.05, 1.1])))
    if rng.random() < 0.6:
        x = recording_chain(x, rng,
                            lowpass_hz=rng.uniform(3000, 8000) if rng.random() < 0.5 else None,
                            highpass_hz=rng.uniform(100, 300) if rng.random() < 0.5 else None)
    if rng.random() < 0.25:
        x = reverb(x, rng, rt60=rng.uniform(0.15, 0.6))
    if rng.random() < 0.6:
        x = add_noise(x, rng, snr_db=rng.uniform(5, 30), kind=str(rng.choice(["white", "pink", "babble"])),
                      babble=babble)
    peak = np.max(np.abs(x)) + 1e-9
    return gain(x / peak * 0.5, rng.uniform(-20, 5))
