"""How many events does a recording give, depending on where the sliding window's grid falls?

    python tools/alignment_sweep.py [--rate 48000] [FILE]

Pads the recording with 2 s + 0..490 ms of silence (10 ms steps) and runs the service's own pipeline
(default settings, default model) over each; with --rate, the audio first goes to that rate and back, as
a sound server and the service's resampler do. Prints the event starts per alignment. The microphone
tests' floor on the number of events comes from this (tests/test_microphone.py check_against_file).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nonspeech import run  # noqa: E402

from edge.audio import read_audio, resample  # noqa: E402
from edge.config import defaults  # noqa: E402
from edge.service import load_model, make_pipeline  # noqa: E402

RATE = 16000
DEMO = Path(__file__).resolve().parent.parent / "edge" / "samples" / "demo.wav"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", default=str(DEMO))
    p.add_argument("--rate", type=int, help="resample to this rate and back first")
    a = p.parse_args(argv)
    x = read_audio(a.file)
    if a.rate:
        x = resample(resample(x, RATE, a.rate), a.rate, RATE).astype(np.float32)
    cfg = defaults()
    clf = load_model(cfg)
    counts = []
    for lead_ms in range(0, 500, 10):
        audio = np.concatenate([np.zeros(2 * RATE + lead_ms * RATE // 1000, np.float32), x,
                                np.zeros(3 * RATE, np.float32)])
        _, events = run(make_pipeline(clf, cfg, wall_start=0.0), audio)  # a fresh pipeline: fresh statistics
        counts.append(sum(e.type == "start" for e in events))
    c = np.array(counts)
    print("event starts per 10 ms of lead:", " ".join(map(str, counts)))
    print(f"min {c.min()}, median {np.median(c):g}, max {c.max()}; "
          + ", ".join(f"{k}: {np.mean(c == k):.0%}" for k in sorted(set(counts))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
