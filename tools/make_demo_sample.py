"""Make edge/samples/demo.wav: four RAVDESS utterances (strong intensity) with silence between.

RAVDESS (Livingstone & Russo 2018) is CC BY-NC-SA 4.0; the sample is a derived work under the same
licence. Run: python tools/make_demo_sample.py [DATA_DIR]
"""
import sys
from pathlib import Path

import numpy as np

from converter.corpora import default_data_dir
from edge.audio import read_audio, write_wav

data = Path(sys.argv[1]) if len(sys.argv) > 1 else default_data_dir()
# actor 12 (female) and 11 (male): angry, happy, sad, neutral
files = ["ravdess/Actor_12/03-01-05-02-01-01-12.flac", "ravdess/Actor_11/03-01-03-02-02-01-11.flac",
         "ravdess/Actor_12/03-01-04-02-01-01-12.flac", "ravdess/Actor_11/03-01-01-01-01-01-11.flac"]
rng = np.random.default_rng(0)
gap = lambda s: (rng.standard_normal(int(s * 16000)) * 1e-4).astype(np.float32)  # faint room noise
parts = [gap(1.0)]
for f in files:
    parts += [read_audio(data / f), gap(2.5)]
x = np.concatenate(parts)
write_wav(Path(__file__).resolve().parent.parent / "edge" / "samples" / "demo.wav", x)
print(f"{len(x) / 16000:.1f} s")
