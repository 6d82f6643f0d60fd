"""On-device adaptation: the running speech statistics, their persistence, and the pipeline using them."""
import json

import numpy as np
import pytest

from edge import features as F
from edge.adapt import RoomFloor, SpeechStats, speech_frames
from edge.audio import read_audio


def test_stats_start_at_the_prior_and_move_to_the_device_speech():
    prior_mean, prior_std = np.zeros(4), np.ones(4)
    st = SpeechStats(prior_mean, prior_std, prior_s=10.0, memory_s=600.0)
    assert np.allclose(st.mean, 0) and np.allclose(st.std, 1) and st.speech_s == 0
    rng = np.random.default_rng(0)
    frames = rng.normal(5.0, 2.0, size=(6000, 4))  # 60 s of "speech" far from the prior
    st.add(frames[:100])  # 1 s: still mostly the prior (10 s of pseudo-speech)
    assert 0.3 < st.mean[0] < 0.6
    st.add(frames[100:])
    assert st.speech_s == pytest.approx(60.0)
    assert st.mean == pytest.approx(np.full(4, 5.0), abs=0.9)  # the prior's 10 s still count, decayed
    assert st.std == pytest.approx(np.full(4, 2.0), abs=0.8)


def test_old_speech_fades_with_the_memory_time_constant():
    st = SpeechStats(np.zeros(2), np.ones(2), prior_s=1.0, memory_s=60.0)
    st.add(np.full((6000, 2), 10.0))  # 60 s at 10
    st.add(np.full((18000, 2), -10.0))  # then 180 s at -10: three time constants later
    assert st.mean[0] < -8.5  # the first minute weighs e^-3 (5 %)


def test_stats_survive_a_restart_but_not_a_change_of_model(tmp_path):
    st = SpeechStats(np.zeros(3), np.ones(3))
    st.add(np.random.default_rng(1).normal(2, 1, size=(500, 3)))
    st.save(tmp_path / "s.json")
    again = SpeechStats(np.zeros(3), np.ones(3))
    assert again.load(tmp_path / "s.json")
    assert again.mean == pytest.approx(st.mean) and again.speech_s == pytest.approx(5.0)
    other_model = SpeechStats(np.full(3, 0.5), np.ones(3))
    assert not other_model.load(tmp_path / "s.json") and other_model.speech_s == 0  # another prior: start again
    (tmp_path / "bad.json").write_text("{not json")
    assert not again.load(tmp_path / "bad.json") and not again.load(tmp_path / "missing.json")


def test_speech_frames_pick_the_loud_part_of_a_real_recording(data_dir):
    x = read_audio(data_dir / "ravdess" / "Actor_01" / "03-01-05-02-01-01-01.flac")
    feat = F.features(x, F.FeatureConfig(kind="logfbank", nfilt=64, winfunc="hamming"))
    mask = speech_frames(feat)
    rms = F.frame_rms(x)[: len(mask)]
    assert 0.2 < mask.mean() < 0.9
    assert np.median(rms[mask]) > 10 * np.median(rms[~mask])  # speech frames are much louder


def test_a_noisy_room_is_not_taken_for_speech_by_the_adaptation(data_dir):
    """An utterance in a room with a -60 dBFS floor: "within 30 dB of the loudest frame" counts the room
    as speech (RAVDESS speaks only 25-35 dB above such a floor, less after pre-emphasis), which polluted
    the device statistics and pushed a CV stream towards "angry"; with the room's floor measured it does
    not, and the utterance's speech still counts."""
    cfg = F.FeatureConfig(kind="logfbank", nfilt=64, nfft=512, winfunc="hamming", preemph=0.97)
    x = read_audio(data_dir / "ravdess" / "Actor_01" / "03-01-05-01-01-01-01.flac")
    room = (np.random.default_rng(0).standard_normal(len(x) + 32000) * 10 ** (-60 / 20)).astype(np.float32)
    room[16000 : 16000 + len(x)] += x
    feat = F.features(room, cfg)
    room_only = np.r_[0:90, len(feat) - 190 : len(feat)]  # a second of room before, more after
    floor = RoomFloor()
    for start in range(0, len(feat) - 300, 50):  # the pipeline's windows, 3 s every 0.5 s
        f = floor.update(feat[start : start + 300])
    assert speech_frames(feat)[room_only].mean() > 0.5, "the failure this guards against"
    mask = speech_frames(feat, floor=f)
    assert mask[room_only].mean() < 0.05
    assert mask.sum() > 50, "the utterance's speech still counts"


def test_device_normalised_model_adapts_in_the_pipeline_and_the_service_keeps_it(tmp_path):
    """A device-normalised model: the pipeline learns while it listens; the service saves the
    statistics, and a restart starts from them."""
    from conftest import ROOT, SAMPLE, ser_edge

    from edge.model import Classifier
    from edge.pipeline import AdaptationSettings, Pipeline

    model = ROOT / "tests" / "fixtures" / "v2-device-fold0-int8.tflite"  # a v2 fold model (experimental recipe)
    clf = Classifier(model)
    assert clf.meta.normalisation == "device" and len(clf.meta.mean) == clf.meta.features.nfilt
    x = read_audio(SAMPLE)
    pipe = Pipeline(clf, wall_start=0.0)
    for i in range(0, len(x), 1600):
        pipe.push(x[i : i + 1600])
    assert 3.0 < pipe.speech_stats.speech_s < len(x) / 16000
    frozen = Pipeline(clf, wall_start=0.0, adaptation=AdaptationSettings(enabled=False))
    frozen.push(x)
    assert frozen.speech_stats.speech_s == 0 and np.allclose(frozen.speech_stats.mean, clf.meta.mean)

    state = tmp_path / "state"
    r = ser_edge("run", "--source", f"file:{SAMPLE}", "--speed", "0", "--no-mqtt", "--state-dir", str(state),
                 "--model", str(model))
    assert r.returncode == 0, r.stderr[-2000:]
    saved = json.loads((state / "speech-stats.json").read_text())
    assert saved["speech_s"] == pytest.approx(pipe.speech_stats.speech_s, rel=0.05)
    r = ser_edge("run", "--source", f"file:{SAMPLE}", "--speed", "0", "--no-mqtt", "--state-dir", str(state),
                 "--model", str(model))
    assert r.returncode == 0 and "speech statistics restored" in r.stderr
    assert json.loads((state / "speech-stats.json").read_text())["speech_s"] > 1.9 * saved["speech_s"]
