"""Converter: corpus loaders, speaker-independent folds, augmentation, and the smoke path end to end
(tiny subset, one epoch, int8, inspect, analyze on the edge side)."""
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLE, ser_edge

pytest.importorskip("tensorflow")
from converter import augment, corpora  # noqa: E402
from converter.corpora import LABELS, load_cremad, load_emodb, load_ravdess, load_savee, load_tess  # noqa: E402
from converter.dataset import random_split, speaker_folds  # noqa: E402
from converter.train import sample_weights  # noqa: E402
from edge.audio import write_wav  # noqa: E402


def make(root, names):
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        write_wav(p, (0.1 * np.random.default_rng(0).standard_normal(1600)).astype(np.float32))
    return root


def test_cremad_savee_emodb_loaders_on_generated_names(tmp_path):
    c = load_cremad(make(tmp_path / "cremad", ["1001_DFA_ANG_XX.wav", "1091_IEO_SAD_HI.wav", "1002_ITS_NEU_XX.wav",
                                               "README.wav"]))
    assert [(u.speaker, u.label) for u in c] == [("cremad-1001", "angry"), ("cremad-1002", "neutral"),
                                                 ("cremad-1091", "sad")]
    s = load_savee(make(tmp_path / "savee", ["DC_a01.wav", "JE_sa03.wav", "KL_su15.wav", "JK/n07.wav"]))
    assert sorted((u.speaker, u.label, u.gender) for u in s) == [
        ("savee-DC", "angry", "male"), ("savee-JE", "sad", "male"), ("savee-JK", "neutral", "male"),
        ("savee-KL", "surprised", "male")]
    e = load_emodb(make(tmp_path / "emodb", ["03a01Fa.wav", "08b02Wb.wav", "16a05Lc.wav", "13a07Ea.wav"]))
    assert [(u.speaker, u.gender, u.label) for u in e] == [("emodb-03", "male", "happy"),
                                                           ("emodb-08", "female", "angry"),
                                                           ("emodb-13", "female", "disgust")]  # boredom skipped


def test_ravdess_and_tess_loaders_on_the_shared_data(data_dir):
    r = load_ravdess(data_dir / "ravdess")
    t = load_tess(data_dir / "tess")
    assert len(r) == 1200 and {u.label for u in r} == set(LABELS)
    assert {u.gender for u in r if u.speaker == "ravdess-01"} == {"male"}
    assert len(t) >= 2790 and {u.speaker for u in t} == {"tess-OAF", "tess-YAF"} and "calm" not in {u.label for u in t}


def test_nemo_and_urdu_loaders_on_the_shared_data(data_dir):
    """Speaker ids, gender (the manifest's) and labels mapped into the taxonomy; classes a corpus lacks
    never appear."""
    if not (data_dir / "nemo").is_dir() or not (data_dir / "urdu").is_dir():
        pytest.skip("nEMO / URDU not in the data directory")
    import csv

    nemo = corpora.load_corpora(data_dir, ("nemo",))
    urdu = corpora.load_corpora(data_dir, ("urdu",))
    assert len(nemo) == 4481 and len({u.speaker for u in nemo}) == 9
    assert {u.label for u in nemo} == {"neutral", "happy", "sad", "angry", "fearful", "surprised"}
    assert len(urdu) == 400 and {u.label for u in urdu} == {"neutral", "happy", "sad", "angry"}
    with open(data_dir / "manifest.csv", newline="") as f:
        gender = {row["speaker"]: row["gender"] for row in csv.DictReader(f)}
    assert all(u.gender == gender[u.speaker] for u in nemo + urdu)
    assert {u.speaker for u in nemo if u.gender == "male"} == {f"nemo-{s}" for s in ("KS0", "MP0", "SM0", "TP0", "WR0")}


def test_folds_are_speaker_disjoint_and_gender_balanced():
    speakers = np.array([f"ravdess-{i:02d}" for i in range(1, 21)] * 3 + ["tess-OAF", "tess-YAF"])
    genders = np.array([("male" if i % 2 else "female") for i in range(1, 21)] * 3 + ["female", "female"])
    folds = speaker_folds(speakers, genders, 5, seed=0)
    flat = [s for f in folds for s in f]
    assert len(flat) == len(set(flat)) == 20 and not any(s.startswith("tess") for s in flat)
    for f in folds:
        assert sum(int(s[-2:]) % 2 for s in f) == 2  # two men, two women in each fold
    assert folds == speaker_folds(speakers, genders, 5, seed=0)
    tr, te = random_split(100, 0.2, 0)
    assert len(set(tr) & set(te)) == 0 and len(te) == 20


def test_sample_weights_balance_gender_and_class():
    # like the shared data: men only in one corpus covering every class, women in both; one rare class
    y = np.array([0, 1, 2, 3] * 20 + [0, 1, 2] * 100)
    g = np.array(["male", "female"] * 40 + ["female"] * 300)
    w = sample_weights(y, g, True)
    assert w[g == "male"].sum() == pytest.approx(w[g == "female"].sum(), rel=0.25)
    assert w[y == 3].sum() > 2.5 * (y == 3).mean() * w.sum()  # the rare class is up-weighted
    assert np.allclose(sample_weights(y, g, False)[y == 3].sum(), w.sum() / 4)


def test_augmentations_keep_length_level_and_snr():
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    n = augment.add_noise(x, rng, 10.0, "pink")
    snr = 10 * np.log10(np.mean(x**2) / np.mean((n - x) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)
    assert len(augment.speed(x, 1.1)) == pytest.approx(16000 / 1.1, abs=2)
    lp = augment.lowpass(np.random.default_rng(1).standard_normal(16000), 4000)
    spec = np.abs(np.fft.rfft(lp)) ** 2
    f = np.fft.rfftfreq(16000, 1 / 16000)
    assert spec[f > 6000].mean() < 0.02 * spec[f < 3000].mean()
    assert np.all(np.isfinite(augment.random_augment(x, rng, babble=[x])))


@pytest.mark.slow
def test_smoke_path_train_quantize_inspect_analyze(tmp_path, data_dir):
    model = tmp_path / "smoke.tflite"
    r = subprocess.run([sys.executable, "-m", "converter.cli", "train", "--recipe", "smoke", "--run-dir",
                        str(tmp_path / "run"), "--out", str(model), "--data", str(data_dir)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "run" / "cv.json").exists() and (tmp_path / "run" / "cv.md").exists()
    cv = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert "speaker-independent" in cv["split"] and "int8" in cv and "float_lowpass" in cv
    r = subprocess.run([sys.executable, "-m", "converter.cli", "inspect", "--json", str(model)], capture_output=True,
                       text=True, cwd=ROOT)
    doc = json.loads(r.stdout)
    assert doc["inputs"][0]["dtype"] == "int8" and doc["metadata"]["labels"] == LABELS
    assert len(doc["sha256"]) == 64
    r = subprocess.run([sys.executable, "-m", "converter.cli", "quantize", str(model)], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout
    r = ser_edge("analyze", "--clip", "--model", str(model), str(SAMPLE))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["windows"] > 0


def test_zoo_lists_the_seed_architectures_and_runs_one_end_to_end(tmp_path, data_dir):
    """`ser-convert zoo`: the five papers' architectures are listed; one trains on a tiny subset on
    the first speaker fold, converts to int8, and is timed with the edge interpreter (no TensorFlow)."""
    from converter import zoo

    r = subprocess.run([sys.executable, "-m", "converter.cli", "zoo", "--list"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    listed = {line.split()[0] for line in r.stdout.splitlines()}
    assert {"adrnn_clstm", "acrnn", "lstm_rms_zcr_mfcc", "bilstm_rms_zcr_mfcc", "cnn_lstm_2d_lflb", "cnn_lstm_1d",
            "cnn1d_zcr_rms_mfcc"} <= listed
    assert len({s.source for s in zoo.SEEDS.values() if s.source.isdigit()}) == 5
    run = tmp_path / "zoo"
    r = subprocess.run([sys.executable, "-m", "converter.cli", "zoo", "--run", "--only", "lstm_rms_zcr_mfcc",
                        "--subset", "10", "--epochs", "1", "--no-random-split", "--data", str(data_dir),
                        "--run-dir", str(run)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    row = json.loads((run / "zoo.jsonl").read_text().splitlines()[-1])
    assert row["folds"][0] == ["ravdess-05", "ravdess-09", "ravdess-10", "ravdess-12"], "the project's fold 1"
    assert row["params"] == 55816 and row["macs"] > 1e6
    assert row["int8_status"] == "converted" and row["int8_latency"]["runtime"] == "tflite_runtime"
    assert 0 <= row["float"]["uar"] <= 1 and 0 <= row["int8"]["uar"] <= 1
    table = zoo.report_markdown([row], None)
    assert "`lstm_rms_zcr_mfcc`" in table and "speakers shared" in table


@pytest.mark.slow
def test_crop_recipe_smoke_path_cv_and_final_model(tmp_path, data_dir):
    """The v2 (crop) recipe end to end on a subset: CV with device normalisation simulated per held-out
    speaker, an int8 model that carries its prior, and the edge runtime adapting with it."""
    model = tmp_path / "v2.tflite"
    r = subprocess.run([sys.executable, "-m", "converter.cli", "train", "--recipe", "smoke_v2", "--run-dir",
                        str(tmp_path / "run"), "--out", str(model), "--data", str(data_dir)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    cv = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert "speaker-independent" in cv["split"]
    assert {"centred", "clip", "any_alignment"} <= set(cv["int8"]) and "by_gender" in cv["int8"]["clip"]
    from edge.model import Classifier

    clf = Classifier(model)
    assert clf.is_int8 and clf.meta.normalisation == "device" and len(clf.meta.mean) == clf.meta.features.nfilt
    r = ser_edge("analyze", "--clip", "--model", str(model), str(SAMPLE))
    assert r.returncode == 0, r.stderr

    # stamp-cv: a later CV's numbers go into the metadata; the weights (and so every output) stay
    assert clf.meta.extra["cv"]["int8"]["clip"] == cv["int8"]["clip"]["all"]["uar"]
    cv["int8"]["clip"]["all"]["uar"] = 0.123
    (tmp_path / "later-cv.json").write_text(json.dumps(cv))
    x = np.random.default_rng(0).normal(size=(clf.meta.frames, clf.meta.features.nfilt))
    before, size = clf.predict(x), model.stat().st_size
    for _ in range(2):  # twice: re-stamping replaces the entry, the file does not grow
        r = subprocess.run([sys.executable, "-m", "converter.cli", "stamp-cv", str(model), "--cv-report",
                            str(tmp_path / "later-cv.json")], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
    stamped = Classifier(model)
    assert stamped.meta.extra["cv"]["int8"]["clip"] == 0.123 and stamped.meta.mean == clf.meta.mean
    assert np.array_equal(stamped.predict(x), before)
    assert abs(model.stat().st_size - size) < 64

    # distillation: the CV above kept its fold's float model; a second CV learns from it as a teacher
    assert (tmp_path / "run" / "fold0-float.keras").exists() and (tmp_path / "run" / "final-float.keras").exists()
    r = subprocess.run([sys.executable, "-m", "converter.cli", "evaluate", "--recipe", "smoke_v2", "--run-dir",
                        str(tmp_path / "student"), "--data", str(data_dir), "--set", "distill=0.7",
                        f'teachers=["{tmp_path / "run"}"]', "train_seed=5", "swa_epochs=1", "swa_every=1", "members=2",
                        "distill_temperature=3", "household_p=0.5"],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    student = Classifier(tmp_path / "student" / "fold0-int8.tflite")
    recipe = student.meta.extra["recipe"]
    assert recipe["distill"] == 0.7 and recipe["teachers"] == [str(tmp_path / "run")] and recipe["train_seed"] == 5
    assert recipe["distill_temperature"] == 3 and recipe["household_p"] == 0.5
    # two members in one int8 file, each trained (and weight-averaged) on its own
    assert student.is_int8 and student.meta.extra["arch"] == "dscnn2x2"
    history = json.loads((tmp_path / "student" / "fold0-history.json").read_text())
    assert [h["swa_snapshots"] for h in history["members"]] == [[3], [3]]
    r = subprocess.run([sys.executable, "-m", "converter.cli", "evaluate", "--recipe", "smoke_v2", "--run-dir",
                        str(tmp_path / "orphan"), "--data", str(data_dir), "--set", "distill=0.7",
                        f'teachers=["{tmp_path / "nowhere"}"]'], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode != 0 and "fold0-float.keras" in r.stderr


def test_weight_averaging_takes_the_mean_after_the_schedule_and_batchnorm_follows_the_data():
    """SWA's two parts on a tiny model: the average holds exactly the snapshots after `after_step`, every
    `every` steps; recomputed BatchNorm statistics are the plain mean of the batches' statistics."""
    from converter import crops

    keras = crops.architectures.keras
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.BatchNormalization()(keras.layers.Dense(2)(inp)))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    seen = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(model.get_weights()))
    swa = crops._WeightAverage(after_step=2, every=2)
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(64, 3)), rng.normal(size=(64, 2)), batch_size=8, epochs=1, verbose=0,
              callbacks=[record, swa], shuffle=False)
    assert swa.n == 3  # steps 4, 6, 8 of 8
    for got, *snaps in zip(swa.mean(), seen[3], seen[5], seen[7]):
        assert np.allclose(got, np.mean(snaps, axis=0))

    batches = [rng.normal(loc=k, size=(16, 3)).astype(np.float32) for k in range(4)]

    class Batches:
        k = 0

        def batch(self):
            self.k += 1
            return batches[(self.k - 1) % 4], None

    crops.recompute_batchnorm(model, Batches(), batches=4)
    dense = model.layers[1]
    want = np.mean([dense(b).numpy().mean(axis=0) for b in batches], axis=0)
    assert np.allclose(model.layers[2].moving_mean.numpy(), want, atol=1e-4)
    assert model.layers[2].momentum == 0.99  # restored


def test_edge_op_table_matches_tensorflow_schema():
    """edge.model reads op codes with its own table (the device has no TensorFlow): every entry must be
    the name TensorFlow's schema gives that code."""
    pytest.importorskip("tensorflow")
    from tensorflow.lite.python import schema_py_generated as schema

    from edge.model import BUILTIN_OPS

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    wrong = {code: (ours, names.get(code)) for code, ours in BUILTIN_OPS.items() if names.get(code) != ours}
    assert not wrong, wrong


@pytest.mark.slow
def test_leave_one_corpus_out_scores_only_the_four_shared_classes(tmp_path, data_dir):
    """`ser-convert loco`: trains without the held-out corpus and scores it on neutral/happy/sad/angry,
    adapted and prior-only."""
    if not (data_dir / "urdu").is_dir():
        pytest.skip("URDU not in the data directory")
    r = subprocess.run([sys.executable, "-m", "converter.cli", "loco", "--recipe", "smoke_v2", "--corpus", "urdu",
                        "--run-dir", str(tmp_path), "--data", str(data_dir)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "loco-urdu.json").read_text())
    assert res["held_out_corpus"] == "urdu" and res["n"] > 0
    for key in ("int8_adapted", "int8_prior_only", "float"):
        assert set(res[key]["per_class"]) == {"neutral", "happy", "sad", "angry"}
        assert 0 <= res[key]["clip_uar"] <= 1


def test_a_student_held_out_from_a_corpus_does_not_hear_it_unlabelled_either():
    from converter import crops

    r = crops.CropRecipe(teachers=("t",), distill=1.0, transfer_corpora=("nemo", "urdu"))
    assert crops.without_corpus(r, "nemo").transfer_corpora == ("urdu",)
    assert crops.without_corpus(r, "ravdess").transfer_corpora == ("nemo", "urdu")


def test_a_second_set_adds_to_the_first_instead_of_replacing_it():
    from converter import cli

    args = cli.parser().parse_args(["evaluate", "--recipe", "v2", "--set", "mixup=0", "spec_augment=false",
                                    "--set", "train_seed=12"])
    recipe = cli._recipe(args)
    assert (recipe.mixup, recipe.spec_augment, recipe.train_seed) == (0, False, 12)


def test_train_labels_keep_only_those_classes_and_refuse_unknown_names():
    """`--set train_labels=[...]` (the four-class training of leave-one-corpus-out) trains only on those
    labels, leaves the shipped recipe's hash alone, and an unknown label is refused by name."""
    import argparse

    from converter import cli, crops

    y = np.array([LABELS.index(k) for k in ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust")])
    c = crops.Corpus(utts=[], sp=None, y=y, speaker=np.zeros(7), gender=np.zeros(7),
                     corpus=np.array(["ravdess"] * 6 + ["urdu"]))
    recipe = crops.CropRecipe(corpora=("ravdess", "tess"))
    assert crops.in_recipe(c, recipe).tolist() == [True] * 6 + [False]
    four = crops.CropRecipe(corpora=("ravdess", "tess"), train_labels=crops.FOUR)
    assert [LABELS[k] for k in y[crops.in_recipe(c, four)]] == ["neutral", "happy", "sad", "angry"]
    assert crops.CropRecipe(train_labels=()).hash() == crops.CropRecipe().hash() != four.hash()

    args = argparse.Namespace(recipe="v2", set=['train_labels=["neutral","joy"]'])
    with pytest.raises(SystemExit, match="train_labels: no label 'joy'"):
        cli._recipe(args)
    args.set = ['train_labels=["neutral","sad"]']
    assert cli._recipe(args).train_labels == ("neutral", "sad")
    args.set = ["members=0"]
    with pytest.raises(SystemExit, match="members=0: expected a whole number"):
        cli._recipe(args)


def crops_recipe_metadata(bands: int):
    from converter import crops

    return crops.CropRecipe(bands=bands, window_s=1.0, normalisation="window_mean").metadata()


def test_members_average_into_one_int8_model(tmp_path):
    """`members`: n networks averaged in one graph, rebuilt by name ("dscnn2x2") for conversion, and one
    clean full-int8 file whose scores are the members' mean."""
    from converter import architectures, quantize
    from edge.model import Classifier, int8_problems

    rng = np.random.default_rng(0)
    meta = crops_recipe_metadata(bands=16)
    members = [architectures.build("dscnn2_small", meta.frames, 16, 8) for _ in range(2)]
    for m in members:  # distinct weights: the converter would share identical ones
        m.set_weights([w + 0.05 * rng.standard_normal(w.shape).astype(w.dtype) for w in m.get_weights()])
    pair = architectures.averaged(members, "dscnn2_smallx2")
    x = rng.standard_normal((16, meta.frames, 16)).astype(np.float32)
    mean = np.mean([m.predict(x[..., None], verbose=0) for m in members], axis=0)
    assert np.allclose(pair.predict(x[..., None], verbose=0), mean, atol=1e-6)
    with pytest.raises(ValueError, match="averaged n times"):
        architectures.build("dscnn2_smallxtwo", meta.frames, 16, 8)

    path = quantize.write_model(pair, "dscnn2_smallx2", x, meta, tmp_path / "pair.tflite")
    assert int8_problems(path) == []
    single = quantize.write_model(members[0], "dscnn2_small", x, meta, tmp_path / "one.tflite")
    assert 1.8 < path.stat().st_size / single.stat().st_size < 2.1
    clf = Classifier(path)
    got = np.array([clf.predict(w) for w in x])
    assert np.abs(got - mean).max() < 0.02  # int8 against the float mean (a step is 1/256)


def test_distillation_at_a_temperature_softens_and_weighs_like_hinton():
    """soften keeps the ranking and flattens; kd_loss is the label's cross-entropy at distill=0, and at
    distill=1 it is smallest where the student's softened probabilities equal the teachers'."""
    from converter import crops

    tf = crops.architectures.tf
    p = np.array([[0.7, 0.2, 0.05, 0.05]])
    assert np.allclose(crops.soften(p, 1.0), p)
    hot = crops.soften(p, 3.0)
    assert np.allclose(hot.sum(), 1) and np.argmax(hot) == 0 and hot.max() < 0.7 and hot.min() > 0.05
    label = np.array([[0.0, 1.0, 0.0, 0.0]], np.float32)
    y = np.concatenate([label, hot.astype(np.float32)], axis=1)
    ce = float(-np.log(p[0, 1]))
    assert np.isclose(float(crops.kd_loss(4, 3.0, 0.0)(y, tf.constant(p, tf.float32))[0]), ce, rtol=1e-5)
    kd = crops.kd_loss(4, 3.0, 1.0)
    at_teacher = float(kd(y, tf.constant(p, tf.float32))[0])
    for other in ([0.4, 0.4, 0.1, 0.1], [0.9, 0.05, 0.03, 0.02], [0.25, 0.25, 0.25, 0.25]):
        assert float(kd(y, tf.constant([other], tf.float32))[0]) > at_teacher


def test_the_crnn_converts_to_one_fused_int8_lstm_that_follows_the_float_model(tmp_path):
    """dscnn2_lstm: the LSTM becomes one int8 UNIDIRECTIONAL_SEQUENCE_LSTM (no float island, loads in
    tflite-runtime 2.14's op versions), and the int8 scores stay close to the float model's."""
    from converter import architectures, quantize
    from edge.model import Classifier, int8_problems, read_model_file

    rng = np.random.default_rng(0)
    meta = crops_recipe_metadata(bands=16)
    model = architectures.build("dscnn2_lstm", meta.frames, 16, 8)
    model.set_weights([w + 0.05 * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])
    x = rng.standard_normal((16, meta.frames, 16)).astype(np.float32)
    path = quantize.write_model(model, "dscnn2_lstm", x, meta, tmp_path / "crnn.tflite")
    assert int8_problems(path) == []
    assert [op.name for op in read_model_file(path).ops].count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
    want = model.predict(x[..., None], verbose=0)
    got = np.array([Classifier(path).predict(w) for w in x])
    assert np.abs(got - want).max() < 0.05


def test_transfer_corpora_take_only_the_teachers_target_and_need_teachers():
    """A student's transfer utterances (recipe.transfer_corpora) are drawn like any other but their target
    is the teachers' probability alone, also inside a mixup blend; labelled ones keep 1 - distill of the
    label. Without teachers the setting is refused, and an unknown corpus is refused by name."""
    import argparse
    import dataclasses

    from converter import cli, crops

    class Teacher:  # what a compiled teacher returns: a tensor with .numpy()
        def __call__(self, x):
            return self

        def numpy(self):
            return np.full((6, len(LABELS)), 1 / len(LABELS), np.float32)

    y = np.array([0, 3, 4, 0, 3, 4])
    c = crops.Corpus(utts=[], sp=None, y=y, speaker=np.arange(6), gender=np.zeros(6),
                     corpus=np.array(["ravdess"] * 3 + ["nemo"] * 3))
    recipe = crops.CropRecipe(corpora=("ravdess",), transfer_corpora=("nemo",), teachers=("t",), distill=0.5,
                              label_smoothing=0.0, mixup=0.0, batch_size=6,
                              corpus_share=(("ravdess", 0.5), ("nemo", 0.5)))
    assert crops.with_transfer(recipe, c, np.arange(3)).tolist() == [0, 1, 2, 3, 4, 5]
    s = object.__new__(crops.Sampler)
    s.c, s.r, s.idx, s.frames, s.teachers, s.soft, s.embedding = c, recipe, np.arange(6), 4, [Teacher()], None, None
    s.p, s.rng, s.transfer = np.full(6, 1 / 6), np.random.default_rng(0), np.isin(c.corpus, ["nemo"])
    # a window that says which utterance it is (column 0) and whether it is a transfer one (column 1)
    s.window = lambda i, rng: np.stack([np.full(4, float(i)), np.full(4, float(i >= 3)), np.zeros(4)], 1)
    x, target = s.batch()
    for row, t in zip(x[:, 0, 0, 0].astype(int), target):
        expected = np.full(len(LABELS), 1 / len(LABELS))
        if c.corpus[row] == "ravdess":
            expected = 0.5 * expected + 0.5 * np.eye(len(LABELS))[y[row]]
        assert np.allclose(t, expected)
    # mixup: a blend's teacher share is the blend of its two rows' shares, and targets still sum to one
    s.r = dataclasses.replace(recipe, mixup=1.0)
    x, target = s.batch()
    assert np.allclose(target.sum(1), 1.0)
    only_transfer = np.flatnonzero(np.isclose(x[:, 0, 1, 0], 1.0))  # both halves of the blend from nemo
    assert len(only_transfer) and all(np.allclose(target[k], 1 / len(LABELS)) for k in only_transfer)

    with pytest.raises(SystemExit, match="transfer_corpora needs teachers"):
        crops.with_transfer(crops.CropRecipe(transfer_corpora=("nemo",)), c, np.arange(3))
    assert crops.CropRecipe(transfer_corpora=()).hash() == crops.CropRecipe().hash()
    # the model's metadata names the transfer corpus too: its licence applies to the audio
    data = crops.training_data(recipe)
    assert data[0].startswith("RAVDESS") and data[1].startswith("nEMO") and "audio only" in data[1]
    args = argparse.Namespace(recipe="v2", set=['transfer_corpora=["nemo","klingon"]'])
    with pytest.raises(SystemExit, match="transfer_corpora: no corpus 'klingon'"):
        cli._recipe(args)


def test_soft_targets_blend_into_their_utterances_labels_and_are_looked_up_by_manifest_path(tmp_path):
    """`soft_targets` (tools/embedding_teacher.py's file): each utterance's row for the fold takes
    `soft_share` of its windows' target; utterances without a row (NaN) keep the label; the file is
    matched by the manifest's path (from the corpus's directory), and a missing fold is refused."""
    from converter import crops
    from converter.corpora import Utterance

    utts = [Utterance(f"/data/ravdess/Actor_0{k}/a.flac", "ravdess", f"ravdess-0{k}", "male", "neutral")
            for k in range(1, 4)]
    soft = np.full((3, len(LABELS)), np.nan, np.float32)
    soft[0] = np.eye(len(LABELS))[LABELS.index("angry")]
    soft[2] = 1 / len(LABELS)
    np.savez(tmp_path / "t.npz", paths=np.array([f"ravdess/Actor_0{k}/a.flac" for k in (3, 1)]),
             labels=np.array(LABELS), fold0=np.stack([soft[2], soft[0]]))
    c = crops.Corpus(utts=utts, sp=None, y=np.zeros(3, int), speaker=np.array([u.speaker for u in utts]),
                     gender=np.array(["male"] * 3), corpus=np.array(["ravdess"] * 3))
    recipe = crops.CropRecipe(corpora=("ravdess",), soft_targets=str(tmp_path / "t.npz"), soft_share=0.5,
                              label_smoothing=0.0, mixup=0.0, batch_size=6, corpus_share=(("ravdess", 1.0),))
    rows, embedding = crops.load_soft_targets(recipe, c, "fold0")
    assert embedding is None and np.isnan(rows[1]).all()
    assert np.allclose(rows[0], soft[0]) and np.allclose(rows[2], soft[2])
    s = object.__new__(crops.Sampler)
    s.c, s.r, s.idx, s.frames, s.teachers, s.soft, s.embedding = c, recipe, np.arange(3), 4, [], rows, None
    s.p, s.rng, s.transfer = np.full(3, 1 / 3), np.random.default_rng(0), np.zeros(3, bool)
    s.window = lambda i, rng: np.full((4, 3), float(i), np.float32)
    x, target = s.batch()
    label = np.eye(len(LABELS))[0]
    for i, t in zip(x[:, 0, 0, 0].astype(int), target):
        assert np.allclose(t, label if i == 1 else 0.5 * label + 0.5 * soft[i])
    assert crops.CropRecipe(soft_targets="", soft_share=0.0).hash() == crops.CropRecipe().hash()
    with pytest.raises(SystemExit, match="no 'fold3' targets"):
        crops.load_soft_targets(recipe, c, "fold3")


def test_frequency_warp_moves_a_tone_where_a_higher_voice_would_put_it():
    """warp_bands(x, a) of a tone at f peaks in the band the front end gives a tone at a * f; a = 1 is
    the identity, and the window keeps its shape and finite values at the edges."""
    from converter import crops
    from edge import features as F

    cfg = crops.CropRecipe().feature_config()
    t = np.arange(16000) / 16000

    def tone(hz):
        return F.features((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), cfg)

    x = tone(500.0)
    assert np.allclose(crops.warp_bands(x, 1.0, cfg), x, atol=1e-4)
    for factor in (0.85, 1.2):
        warped = crops.warp_bands(x, factor, cfg)
        assert warped.shape == x.shape and np.all(np.isfinite(warped))
        want = int(np.argmax(tone(500.0 * factor).mean(axis=0)))
        assert abs(int(np.argmax(warped.mean(axis=0))) - want) <= 1
        assert int(np.argmax(warped.mean(axis=0))) != int(np.argmax(x.mean(axis=0)))


def test_a_household_shares_one_device_and_the_prior_alone_does_not_care(data_dir):
    """eval_windows(household=True) streams all held-out speakers through one device's statistics: the
    windows differ from each speaker's own device, and not at all when neither adapts (the prior only)."""
    from converter import crops
    from converter.train import RECIPES

    recipe = RECIPES["smoke_v2"]
    c = crops.load(recipe, data_dir, progress=False)
    ravdess = np.flatnonzero(c.corpus == "ravdess")
    speakers = sorted(set(c.speaker[ravdess].tolist()))[:2]
    test = ravdess[np.isin(c.speaker[ravdess], speakers)]
    train = np.setdiff1d(np.flatnonzero(crops.in_recipe(c, recipe)), test)
    prior = crops.prior_stats(c, train)
    meta = recipe.metadata(*prior)
    own, _ = crops.eval_windows(c, test, meta, recipe, prior)
    house, _ = crops.eval_windows(c, test, meta, recipe, prior, household=True)
    assert own.shape == house.shape and not np.allclose(own, house)
    own0, _ = crops.eval_windows(c, test, meta, recipe, prior, adapt=False)
    house0, _ = crops.eval_windows(c, test, meta, recipe, prior, adapt=False, household=True)
    assert np.allclose(own0, house0)


def test_male_weight_draws_men_that_many_times_as_often_within_each_class_and_corpus_share():
    """sampling_weights at male_weight 1 balances genders in each class; at 2 men get two thirds of
    each class's draws, and the corpus shares and class balance are untouched."""
    from converter.crops import CropRecipe, sampling_weights

    corpus = np.array(["ravdess"] * 6 + ["tess"] * 2)
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    gender = np.array(["male", "female", "female", "male", "male", "female", "female", "female"])
    share = {"ravdess": 0.8, "tess": 0.2}
    for w in (1.0, 2.0):
        p = sampling_weights(corpus, y, gender, share, male_weight=w)
        assert np.isclose(p.sum(), 1.0)
        assert np.isclose(p[corpus == "tess"].sum(), 0.2)  # a corpus of women only keeps its share
        for cl in (0, 1):
            in_cl = (corpus == "ravdess") & (y == cl)
            assert np.isclose(p[in_cl].sum(), 0.4)
            assert np.isclose(p[in_cl & (gender == "male")].sum(), 0.4 * w / (w + 1))
    assert CropRecipe().hash() == CropRecipe(male_weight=1.0).hash() != CropRecipe(male_weight=2.0).hash()
