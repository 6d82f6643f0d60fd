"""Arousal and valence: the circumplex mapping, the states that carry them, and the scores that say how
well they follow held-out speakers."""
import numpy as np
from conftest import SAMPLE

from converter.evaluate import affect_scores, auc
from edge.affect import CIRCUMPLEX, arousal_valence
from edge.audio import read_wav
from edge.model import DEFAULT_MODEL, Classifier
from edge.mqtt import state_payload
from edge.pipeline import Pipeline, SmoothingSettings

LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def test_mapping_is_the_probability_weighted_circumplex():
    one_hot = np.eye(8)
    for i, lab in enumerate(LABELS):
        valence, arousal = CIRCUMPLEX[lab]
        assert arousal_valence(one_hot[i], LABELS) == (arousal, valence)
    half = (one_hot[LABELS.index("angry")] + one_hot[LABELS.index("calm")]) / 2
    assert arousal_valence(half, LABELS) == (round((0.8 - 0.7) / 2, 3), round((-0.6 + 0.4) / 2, 3))
    assert all(-1 <= v <= 1 for pair in CIRCUMPLEX.values() for v in pair)
    # labels without a place (another model's) do not count; none at all gives None
    assert arousal_valence([0.5, 0.5], ["angry", "bored"]) == (0.8, -0.6)
    assert arousal_valence([1.0], ["bored"]) is None


def test_states_carry_arousal_and_valence_while_speech_and_none_after_silence():
    clf = Classifier(DEFAULT_MODEL)
    pipe = Pipeline(clf, smoothing=SmoothingSettings(end_after_s=2.0), wall_start=0.0)
    x = np.concatenate([read_wav(SAMPLE), np.zeros(5 * 16000, np.float32)])
    states = []
    for i in range(0, len(x), 1600):
        if pipe.push(x[i : i + 1600]).state_changed:
            states.append(state_payload(pipe.state))
    spoken = [s for s in states if s["arousal"] is not None]
    assert len(spoken) >= 4 and all(-1 <= s["arousal"] <= 1 and -1 <= s["valence"] <= 1 for s in spoken)
    assert len({(s["arousal"], s["valence"]) for s in spoken}) > 2, "they follow the speech"
    assert states[-1]["arousal"] is None and states[-1]["valence"] is None, "5 s of silence > end_after_s"
    # every state with speech scores has the mapping of those scores
    for s in states:
        if s["scores"]:
            a, v = arousal_valence([s["scores"][lab] for lab in clf.labels], clf.labels)
            assert abs(a - s["arousal"]) < 0.01 and abs(v - s["valence"]) < 0.01


def test_auc_and_affect_scores():
    assert auc([2, 3], [1]) == 1.0 and auc([1], [2, 3]) == 0.0 and auc([1], [1]) == 0.5
    y = np.repeat(np.arange(8), 4)
    strong = np.tile([False, True, False, True], 8)
    perfect = np.eye(8)[y]
    s = affect_scores(perfect, y, strong, LABELS)
    assert s["arousal_auc_high_vs_low"] == 1.0 and s["valence_auc_pleasant_vs_unpleasant"] == 1.0
    assert s["arousal_auc_strong_vs_normal_within_class"] == 0.5, "one-hot scores know nothing of intensity"
    shuffled = np.eye(8)[np.random.default_rng(0).permutation(y)]
    assert affect_scores(shuffled, y, strong, LABELS)["arousal_auc_high_vs_low"] < 0.8
