"""The shipped model file: full int8, self-describing, loadable by the oldest supported runtime, and
bad model files refused with one clear line."""
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLE, ser_edge

from edge.model import (
    DEFAULT_MODEL,
    METADATA_NAME,
    Classifier,
    ModelError,
    ModelMetadata,
    int8_problems,
    read_model_file,
)


def test_default_model_is_small_full_int8_and_self_describing():
    mf = read_model_file(DEFAULT_MODEL)
    assert 10_000 < mf.size <= 150_000
    assert int8_problems(DEFAULT_MODEL) == []  # the project's own check (converter and inspect use it too)
    meta = ModelMetadata.from_json(mf.metadata[METADATA_NAME])
    assert meta.labels == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert meta.frames == meta.features.frames_for(meta.window_s)
    assert "training_data" in meta.extra and "recipe_hash" in meta.extra


def test_edge_side_needs_no_tensorflow():
    """Load and run the model in a fresh interpreter with TensorFlow, scipy and librosa made unimportable."""
    code = ("import sys\n"
            "for m in ('tensorflow', 'scipy', 'librosa', 'converter', 'keras'): sys.modules[m] = None\n"
            "import edge.cli, edge.pipeline, edge.mqtt, edge.sources\n"
            "from edge.model import Classifier\n"
            "c = Classifier()\n"
            "import numpy as np\n"
            "p = c.predict(np.random.default_rng(0).standard_normal((c.meta.frames, c.meta.features.num_features)))\n"
            "assert abs(p.sum() - 1) < 0.05, p\n"
            "print(c.runtime)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("tflite_runtime", "ai_edge_litert")


def test_analyze_clip_and_timeline():
    r = ser_edge("analyze", "--clip", str(SAMPLE))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["file"] == str(SAMPLE) and doc["windows"] > 0 and doc["label"] in doc["scores"]
    assert abs(sum(doc["scores"].values()) - 1) < 0.05
    r = ser_edge("analyze", str(SAMPLE))
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    assert len(rows) > 10 and any(x["speech"] for x in rows) and any(not x["speech"] for x in rows)
    assert all((x["label"] is None) == (not x["speech"]) for x in rows)


def test_a_clip_shorter_than_the_window_is_analysed_centred_in_faint_noise(tmp_path, data_dir):
    """A clip shorter than the model's window (a TESS word): one window with the word in its middle,
    surrounded by faint noise (how training saw short utterances), flagged as speech and labelled."""
    from edge.audio import read_audio, write_wav

    x = read_audio(data_dir / "tess" / "YAF_angry" / "YAF_back_angry.flac")
    speech = np.flatnonzero(np.abs(x) > 0.05 * np.abs(x).max())
    x = x[max(0, speech[0] - 1600):]  # the word and what follows, cut to fit inside one window
    x = x[: int((Classifier(DEFAULT_MODEL).meta.window_s - 0.3) * 16000)]
    write_wav(tmp_path / "word.wav", x)
    r = ser_edge("analyze", "--clip", str(tmp_path / "word.wav"))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["windows"] == 1 and doc["label"] is not None
    r = ser_edge("analyze", str(tmp_path / "word.wav"))
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["speech"]


def _corrupt(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_bad_model_files_are_refused_with_one_line(tmp_path):
    good = DEFAULT_MODEL.read_bytes()
    cases = {
        "truncated.tflite": good[: len(good) // 3],
        "text.tflite": b"this is not a model\n",
        "empty.tflite": b"",
        "header-only.tflite": good[:8],
    }
    for name, data in cases.items():
        p = _corrupt(tmp_path, name, data)
        with pytest.raises(ModelError, match=name):
            Classifier(p)
        r = ser_edge("analyze", "--model", str(p), str(SAMPLE))
        assert r.returncode == 2, (name, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1 and name in r.stderr


def _with_metadata(tmp_path, name, change):
    pytest.importorskip("tensorflow")
    from converter.quantize import embed_metadata

    meta = ModelMetadata.from_json(read_model_file(DEFAULT_MODEL).metadata[METADATA_NAME])
    change(meta)
    p = tmp_path / name
    p.write_bytes(embed_metadata(DEFAULT_MODEL.read_bytes(), meta))
    return p


def test_label_and_shape_mismatches_are_refused(tmp_path):
    p = _with_metadata(tmp_path, "labels.tflite", lambda m: m.labels.append("bored"))
    r = ser_edge("analyze", "--model", str(p), str(SAMPLE))
    assert r.returncode == 2 and "9 labels in metadata but the model has 8 outputs" in r.stderr
    p = _with_metadata(tmp_path, "shape.tflite", lambda m: setattr(m, "frames", 100))
    r = ser_edge("analyze", "--model", str(p), str(SAMPLE))
    assert r.returncode == 2 and "does not match the feature settings" in r.stderr
