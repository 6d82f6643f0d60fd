"""Resampling quality: edge.audio.resample vs sox (`rate -v`), same input, one run.

    .venv/bin/python bench/resample_quality.py

For each input rate: passband error (dB) of tones from 100 Hz to 7 kHz, and the worst alias (dB
relative to a full-scale tone) left by tones between 8.5 kHz and the input Nyquist.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edge.audio import read_wav, resample  # noqa: E402


def tone(rate, f, seconds=1.0):
    t = np.arange(int(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * f * t)


def level_db(x, f, rate=16000):
    x = x[2000:-2000]
    t = np.arange(len(x)) / rate
    c = np.abs(np.dot(x * np.hanning(len(x)), np.exp(-2j * np.pi * f * t))) * 2 / np.sum(np.hanning(len(x)))
    return 20 * np.log10(c / 0.5 + 1e-12)


def sox(x, rate):
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.f32", Path(d) / "out.wav"
        x.astype("<f4").tofile(src)
        subprocess.run(["sox", "-t", "f32", "-r", str(rate), "-c", "1", str(src), "-b", "32", "-e", "floating-point",
                        str(dst), "rate", "-v", "16000"], check=True)
        return read_wav(dst)


def main():
    print(f"{'rate':>6} {'tool':>6} {'passband max |err| dB':>22} {'worst alias dB':>15}")
    for rate in (22050, 24414, 44100, 48000, 96000):
        for name, fn in (("edge", lambda x, r=rate: resample(x, r)), ("sox", lambda x, r=rate: sox(x, r))):
            pb = max(abs(level_db(fn(tone(rate, f)), f)) for f in (100, 1000, 3000, 5000, 7000))
            aliases = []
            for f in np.linspace(8500, rate / 2 - 200, 8):
                y = fn(tone(rate, f))
                alias = abs(((f + 8000) % 16000) - 8000)  # where it folds to below 8 kHz
                aliases.append(level_db(y, alias))
            print(f"{rate:>6} {name:>6} {pb:22.4f} {max(aliases):15.1f}")


if __name__ == "__main__":
    main()
