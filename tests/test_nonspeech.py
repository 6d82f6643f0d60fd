"""tools/nonspeech.py: the household sounds it synthesises and its scoring through the service's own
pipeline. Steady sounds give no emotion events; real speech mixed at the same level reaches the model."""
import sys

import numpy as np
from conftest import ROOT, need_data

sys.path.insert(0, str(ROOT / "tools"))
import nonspeech  # noqa: E402

from edge.audio import read_audio  # noqa: E402


def test_steady_household_sounds_give_no_events_and_speech_still_reaches_the_model():
    rng = np.random.default_rng(0)
    for kind, level in (("hum", -45), ("tap", -30), ("white", -45)):
        x = nonspeech.at_level(nonspeech.household(rng, kind, 30.0), level)
        windows, events = nonspeech.run(nonspeech.pipeline(), x)
        assert windows and not any(w.speech for w in windows), kind
        assert not events, kind
    data = need_data()
    speech = read_audio(next(iter(sorted((data / "ravdess").rglob("*.flac")))))
    tap = nonspeech.at_level(nonspeech.household(rng, "tap", 10.0), -40)
    x = tap.copy()
    x[48000 : 48000 + speech.size] += nonspeech.at_level(speech, -25)[: x.size - 48000]
    windows, _ = nonspeech.run(nonspeech.pipeline(), x)
    assert any(w.speech for w in windows), "speech over a running tap must pass the gate"
