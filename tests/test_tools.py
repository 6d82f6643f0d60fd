"""The measurement tools' own arithmetic (tools/ are scripts; their numbers go into docs/RESULTS.md)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.stream_tune import bound  # noqa: E402


def test_stream_bound_pools_each_segments_windows_and_counts_unreached_segments_as_wrong():
    labels = ["neutral", "happy", "sad"]
    nan = [np.nan] * 3
    # windows end every 0.5 s; a 1 s window "sees" a segment when it ends in (start + 0.5, end + 0.5]
    offsets = np.arange(0.5, 10.01, 0.5)
    scores = np.array([nan] * len(offsets), np.float32)
    # segment 1, 1-3 s, happy: windows at 2.0 .. 3.5; two say sad weakly, two say happy strongly
    for t, p in ((2.0, [0.1, 0.2, 0.7]), (2.5, [0.1, 0.2, 0.7]), (3.0, [0.0, 1.0, 0.0]), (3.5, [0.0, 1.0, 0.0])):
        scores[np.isclose(offsets, t)] = p
    # segment 2, 5-7 s, sad: gated (no window reached the model)
    cap = {"labels": labels, "window_s": 1.0, "offsets": offsets, "scores": scores,
           "segments": [{"start_s": 1.0, "end_s": 3.0, "label": "happy"},
                        {"start_s": 5.0, "end_s": 7.0, "label": "sad"}]}
    r = bound(cap)
    assert r["reached"] == 0.5
    assert r["window_right"] == 0.5  # two of segment 1's four windows
    assert r["pooled_right"] == 0.5 and r["pooled_right_of_reached"] == 1.0  # the mean says happy


def test_compare_runs_agreement_with_teachers_counts_matching_top_labels(tmp_path, data_dir, capsys):
    from tools import compare_runs

    rng = np.random.default_rng(0)
    test, y = np.arange(10), rng.integers(0, 8, 10)
    teacher = rng.dirichlet(np.ones(8), size=(10, 5))
    student = teacher.copy()
    student[:5] = np.roll(student[:5], 1, axis=-1)  # half the utterances: every window's top label moves
    for name, p in (("teacher", teacher), ("student", student)):
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "fold0-predictions.npz", test=test, y=y, int8=p)
    assert compare_runs.main([str(tmp_path / "student"), "--teachers", str(tmp_path / "teacher"),
                              "--data", str(data_dir)]) == 0
    assert f"| {tmp_path / 'student'} | 0.500 | 0.500 |" in capsys.readouterr().out


def test_compare_analyses_lets_an_exact_int8_tie_flip_but_not_a_real_disagreement(tmp_path):
    import json
    import subprocess

    def analysis(path, rows):
        path.write_text("".join(json.dumps({"offset_s": i * 0.5, "speech": True, "label": max(s, key=s.get),
                                            "scores": s}) + "\n" for i, s in enumerate(rows)))
        return str(path)

    tie_a = {"sad": 0.4453, "fearful": 0.4453, "happy": 0.1094}  # max() picks the first of a tie: sad
    tie_b = {"sad": 0.4375, "fearful": 0.4531, "happy": 0.1094}  # two steps of rounding later: fearful
    clear = {"sad": 0.70, "fearful": 0.20, "happy": 0.10}
    a = analysis(tmp_path / "a.jsonl", [clear, tie_a])
    b = analysis(tmp_path / "b.jsonl", [clear, tie_b])
    script = [sys.executable, str(Path(__file__).resolve().parent.parent / "tools" / "compare_analyses.py")]
    ok = subprocess.run([*script, a, b, "--steps", "5"], capture_output=True, text=True)
    assert ok.returncode == 0 and "1 near tie" in ok.stdout
    # the same flip is a mismatch when the tolerance is tighter than the rounding that made it
    strict = subprocess.run([*script, a, b, "--steps", "1"], capture_output=True, text=True)
    assert strict.returncode == 1 and "sad vs fearful" in strict.stdout
    flipped = analysis(tmp_path / "c.jsonl", [{"sad": 0.20, "fearful": 0.70, "happy": 0.10}, tie_b])
    real = subprocess.run([*script, a, flipped, "--steps", "20"], capture_output=True, text=True)
    assert real.returncode == 1 and "window at 0.0 s: sad vs fearful" in real.stdout


def test_gender_gap_test_separates_a_real_gap_from_speaker_spread():
    from tools.compare_runs import gender_gap_test

    female = np.array([True] * 10 + [False] * 10)
    clear = gender_gap_test(np.r_[np.full(10, 0.8), np.full(10, 0.6)] + np.linspace(0, 0.01, 20), female)
    assert abs(clear["gap"] - 0.2) < 0.02
    assert clear["p"] < 1e-4 and clear["ci95"][0] > 0.15  # only the true split is that far apart
    spread = np.random.default_rng(1).uniform(0.35, 0.95, 20)  # speakers as far apart as RAVDESS's
    noisy = gender_gap_test(spread, female)
    assert noisy["ci95"][0] < noisy["gap"] < noisy["ci95"][1]
    assert noisy["ci95"][1] - noisy["ci95"][0] > 0.15  # ten speakers a side cannot pin a gap to 5 points
    assert 0 < noisy["p"] <= 1
