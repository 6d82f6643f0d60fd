"""Crop training: windows cut anew every epoch from whole-utterance features, at any alignment.

The second-generation recipe (see docs/RESULTS.md §10). Against the first (`train.py`: a few fixed
windows per utterance) it adds: every alignment of the window on the speech, four corpora, SpecAugment,
mixup and label smoothing, and the choice of normalisation — per window (`window_mean`) or by the
running statistics of the device's own speech (`device`, edge.adapt), simulated in training per
speaker and in evaluation by streaming each held-out speaker's utterances in a random order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge import features as F
from edge.adapt import SpeechStats
from edge.model import Classifier, ModelMetadata

from . import architectures, evaluate, quantize, spectra
from .corpora import LABELS, LICENCES, load_corpora, summary

OFFSETS_S = (-1.0, -0.5, 0.0, 0.5, 1.0)  # evaluation alignments around the speech centre
NOISY_ROOM_DBFS = -60.0  # the noisy evaluation copy: white noise at this level (a quiet room's floor)


_ADDED_LATER = {"train_seed": None, "teachers": (), "distill": 0.0, "swa_epochs": 0, "swa_lr": 5e-4,
                "swa_every": 50, "train_labels": (), "members": 1, "distill_temperature": 1.0,
                "transfer_corpora": (), "soft_targets": "", "soft_share": 0.0,
                "embedding_weight": 0.0, "freq_warp": 0.0, "household_p": 0.0, "male_weight": 1.0}


@dataclass
class CropRecipe:
    arch: str = "dscnn2"
    bands: int = 64
    window_s: float = 3.0
    hop_s: float = 0.5
    normalisation: str = "device"  # or "window_mean"
    corpora: tuple = ("ravdess", "tess", "nemo", "urdu")
    # share of the training draws per corpus (RAVDESS, the only one with all eight classes, the most)
    corpus_share: tuple = (("ravdess", 0.4), ("tess", 0.2), ("nemo", 0.3), ("urdu", 0.1))
    epochs: int = 40
    steps_per_epoch: int = 0  # 0: one pass's worth of the training utterances
    batch_size: int = 64
    learning_rate: float = 2e-3
    label_smoothing: float = 0.1
    mixup: float = 0.2  # probability that a batch is mixed (Beta(0.4, 0.4) weights)
    spec_augment: bool = True
    n_aug: int = 2
    clean_fraction: float = 0.4  # share of training windows from the clean copy (the rest augmented)
    stats_jitter: float = 0.15  # noise on the device statistics in training (a device's estimate is rough)
    # a room's noise floor added to this share of training windows, at a level drawn from the range
    # (dBFS RMS of white noise); 0: none. Without it a quiet room's -60 dBFS floor pushed most speech
    # towards "angry" (docs/RESULTS.md section 10)
    noise_floor_p: float = 0.0
    noise_floor_dbfs: tuple = (-75.0, -45.0)
    # vocal-tract-length perturbation in the mel domain: every training window's frequency axis scaled by
    # a factor drawn from [1 - freq_warp, 1 + freq_warp] (0: none). Men's formants and pitch sit ~15-20 %
    # below women's, and men score 6-13 points lower in every run (docs/RESULTS.md section 10)
    freq_warp: float = 0.0
    # within a class of a corpus, men's utterances are drawn male_weight times as often as women's (1:
    # balanced). Asked whether the draw, not the number of male voices, holds men back: at 2 it did not
    # lift men (a two-fold probe, docs/RESULTS.md section 10)
    male_weight: float = 1.0
    # share of training windows normalised by a household's device statistics (the speaker's speech
    # pooled with up to three other training speakers' of the same corpus, interleaved) instead of the
    # speaker's own. A home's device hears several voices; one device's statistics shared by a fold's four
    # held-out speakers cost 3.4 points of clip UAR (`ser-convert rescore`, docs/RESULTS.md section 10)
    household_p: float = 0.0
    prior_s: float = 30.0
    seed: int = 0  # the folds, the evaluation order, and (unless train_seed is set) the training
    folds: int = 5
    max_folds: int = 0
    subset: int = 0
    # the weights' and the draws' seed; None: `seed`. Members of an ensemble differ in this one and hold
    # out the same speakers (a different `seed` would draw different folds)
    train_seed: int | None = None
    # distillation: run directories whose fold<k>-float.keras teach fold k (the final model: final-float.keras);
    # `distill` is the teachers' mean probability's share of every window's target, the rest the label
    teachers: tuple = ()
    distill: float = 0.0
    # above 1: Hinton's distillation instead. Teachers' and student's probabilities are both softened
    # (p^(1/T), renormalised), the student matches the teachers' softened mean with weight distill * T^2
    # and the label with 1 - distill; at T = 1 the teachers' small probabilities, where the dark
    # knowledge is, barely count
    distill_temperature: float = 1.0
    # corpora the student also draws from with the teachers' probability as the whole target (their labels
    # unused; give them a corpus_share). The teachers never trained on them, so there (and on mixup's
    # blends) their ensemble differs from each member: the function an ensemble is, shown where it matters
    transfer_corpora: tuple = ()
    # per-utterance soft targets from another kind of teacher (tools/embedding_teacher.py: a speaker encoder
    # pretrained on thousands of voices, its probabilities out of fold): `soft_share` of each window's
    # target is its utterance's row for this fold (utterances without one keep their label)
    soft_targets: str = ""
    soft_share: float = 0.0
    # above 0: a second head (training only, not in the device's model) predicts each utterance's encoder
    # embedding from the file's `embedding` (mean squared error at this weight beside the class loss)
    embedding_weight: float = 0.0
    # stochastic weight averaging: after the cosine schedule, `swa_epochs` more epochs at the constant
    # rate `swa_lr`, the weights averaged every `swa_every` steps (then BatchNorm's statistics recomputed
    # for the averaged weights). An ensemble's variance reduction in one model of the same size
    swa_epochs: int = 0
    swa_lr: float = 5e-4
    swa_every: int = 50
    # train only on utterances with these labels (); (): all eight. The head keeps eight outputs; the others
    # are never a target. Leave-one-corpus-out's four shared classes, trained directly
    train_labels: tuple = ()
    # an ensemble in one model file: `members` networks trained independently (train seeds train_seed,
    # train_seed + 1, ...; the same draws as separate runs with those seeds), their scores averaged in
    # one graph (architectures.averaged). Size and CPU grow with it: the budget decides
    members: int = 1

    def hash(self) -> str:
        d = dataclasses.asdict(self)
        for name, default in _ADDED_LATER.items():  # recipes from before these fields keep their hash
            if json.dumps(d[name]) == json.dumps(default):  # () and [] alike
                del d[name]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def training_seed(self) -> int:
        return self.seed if self.train_seed is None else self.train_seed

    def model_arch(self) -> str:
        """The model file's architecture: `arch`, or `arch`x`members` for an ensemble in one file."""
        return self.arch if self.members == 1 else f"{self.arch}x{self.members}"

    def feature_config(self) -> F.FeatureConfig:
        return F.FeatureConfig(kind="logfbank", nfilt=self.bands, nfft=512, winfunc="hamming", preemph=0.97)

    def metadata(self, prior_mean=None, prior_std=None, extra: dict | None = None) -> ModelMetadata:
        cfg = self.feature_config()
        if self.normalisation == "device":
            mean, scale = list(map(float, prior_mean)), list(map(float, prior_std))
        else:
            mean, scale = [], [4.0] * self.bands
        return ModelMetadata(labels=list(LABELS), features=cfg, window_s=self.window_s, hop_s=self.hop_s,
                             frames=cfg.frames_for(self.window_s), normalisation=self.normalisation,
                             mean=mean, scale=scale, extra=extra or {})


# --------------------------------------------------------------------------------------------------
# Data


@dataclass
class Corpus:
    """The utterances of a run, their features, and their labels and groups as arrays."""

    utts: list
    sp: spectra.Spectra
    y: np.ndarray
    speaker: np.ndarray
    gender: np.ndarray
    corpus: np.ndarray


ALL_CORPORA = ("ravdess", "tess", "nemo", "urdu")


def load(recipe: CropRecipe, data_dir=None, progress=True) -> Corpus:
    """Every corpus the data directory has (one feature cache for all recipes); recipes then pick
    theirs with `in_recipe`."""
    utts = load_corpora(data_dir, ALL_CORPORA)
    if recipe.subset > 1:
        utts = utts[:: recipe.subset]
    print(summary(utts), flush=True)
    sp = spectra.build(utts, recipe.feature_config(), n_aug=recipe.n_aug, seed=recipe.seed, progress=progress)
    lab = {n: i for i, n in enumerate(LABELS)}
    return Corpus(utts, sp, np.array([lab[u.label] for u in utts]), np.array([u.speaker for u in utts]),
                  np.array([u.gender for u in utts]), np.array([u.corpus for u in utts]))


def in_recipe(c: Corpus, recipe: CropRecipe) -> np.ndarray:
    """The utterances a recipe may train on: its corpora, and its labels if it names them."""
    keep = np.isin(c.corpus, recipe.corpora)
    if recipe.train_labels:
        keep &= np.isin(c.y, [LABELS.index(k) for k in recipe.train_labels])
    return keep


def prior_stats(c: Corpus, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per band of the clean speech frames of utterances `idx` (the device's prior)."""
    rows = np.concatenate([c.sp.get(i, 0)[c.sp.speech_mask(i, 0)] for i in idx]).astype(np.float64)
    return rows.mean(axis=0), rows.std(axis=0)


def speaker_stats(c: Corpus, idx: np.ndarray, prior, recipe: CropRecipe, copies) -> dict:
    """(speaker, copy) -> SpeechStats after that speaker's speech in that copy (a simulated device that
    has heard all of them). Augmented copies share one entry per speaker: their channels differ per
    utterance, which the stats cannot know (a rough estimate, like a device's)."""
    out = {}
    rng = np.random.default_rng(recipe.seed)
    speakers = sorted(set(c.speaker[idx].tolist()))
    for spk in speakers:
        mine = idx[c.speaker[idx] == spk]
        for kind, cs in copies.items():
            out[(spk, kind)] = _device_after(c, rng.permutation(mine), cs, prior, recipe)
    if recipe.household_p:
        corpus_of = {s: c.corpus[idx][c.speaker[idx] == s][0] for s in speakers}
        for spk in speakers:
            others = [s for s in speakers if s != spk and corpus_of[s] == corpus_of[spk]]
            house = [spk] + [str(s) for s in rng.permutation(others)[:3]]
            heard = rng.permutation(idx[np.isin(c.speaker[idx], house)])  # the household's voices interleaved
            for kind, cs in copies.items():
                out[(spk, kind, "house")] = _device_after(c, heard, cs, prior, recipe)
    return out


def _device_after(c: Corpus, heard: np.ndarray, copies: list, prior, recipe: CropRecipe) -> tuple:
    """(mean, std) of a fresh device's statistics after the speech of `heard` (in that order) in `copies`."""
    st = SpeechStats(*prior, prior_s=recipe.prior_s)
    for i in heard:
        for cc in copies:
            st.add(c.sp.get(i, cc)[c.sp.speech_mask(i, cc)])
    return st.mean.astype(np.float32), st.std.astype(np.float32)


def cut(frames: np.ndarray, centre: int, length: int, rng) -> np.ndarray:
    """`length` rows around row `centre`; outside the recording, its quietest level (a room's floor)."""
    start = centre - length // 2
    out = np.empty((length, frames.shape[1]), np.float32)
    floor = frames.min(axis=0).astype(np.float32)
    out[:] = floor + rng.standard_normal((length, frames.shape[1])).astype(np.float32) * 0.5
    a, b = max(0, start), min(len(frames), start + length)
    if b > a:
        out[a - start : b - start] = frames[a:b]
    return out


_NOISE_POWER: dict = {}


def noise_power(cfg: F.FeatureConfig) -> np.ndarray:
    """Mel-band power (frames, bands) of 20 s of unit-RMS white noise through the device's front end."""
    key = cfg.to_json() if hasattr(cfg, "to_json") else repr(cfg)
    if key not in _NOISE_POWER:
        x = np.random.default_rng(12345).standard_normal(20 * 16000)
        _NOISE_POWER[key] = np.exp(F.features(x, cfg).astype(np.float64))
    return _NOISE_POWER[key]


def add_noise_floor(feat: np.ndarray, dbfs: float, power: np.ndarray, rng) -> np.ndarray:
    """Log-mel `feat` with white noise at `dbfs` added (powers add for independent signals)."""
    start = int(rng.integers(0, len(power) - len(feat))) if len(power) > len(feat) else 0
    noise = np.resize(power[start:], feat.shape) * 10 ** (dbfs / 10)
    return np.log(np.exp(feat.astype(np.float64)) + noise).astype(np.float32)


def warp_bands(x: np.ndarray, factor: float, cfg: F.FeatureConfig) -> np.ndarray:
    """`x` (frames, bands) of log-mel features as if every frequency were `factor` times higher: band j
    (centre f_j) takes the value at f_j / factor, interpolated between bands; beyond the edge bands,
    the edge band. Applied after normalisation, so a window stays normalised by its own speaker."""
    high = cfg.highfreq or cfg.samplerate / 2
    mel = np.linspace(F.hz2mel(cfg.lowfreq), F.hz2mel(high), cfg.nfilt + 2)
    centres = F.mel2hz(mel[1:-1])
    source = (F.hz2mel(centres / factor) - mel[0]) / (mel[1] - mel[0]) - 1  # fractional band index
    source = np.clip(source, 0, x.shape[1] - 1)
    lo = np.minimum(source.astype(int), x.shape[1] - 2)
    frac = (source - lo).astype(np.float32)
    return x[:, lo] * (1 - frac) + x[:, lo + 1] * frac


def speech_centre(mask: np.ndarray) -> int:
    idx = np.flatnonzero(mask)
    return int((idx[0] + idx[-1]) // 2) if len(idx) else len(mask) // 2


def sampling_weights(corpus: np.ndarray, y: np.ndarray, gender: np.ndarray, share: dict,
                     male_weight: float = 1.0) -> np.ndarray:
    """Probability of drawing each utterance: every corpus gets its share of the draws, and within a
    corpus its classes are balanced, and within a class its genders (men `male_weight` times women).

    Balancing classes across corpora instead would be a trap: a class only one corpus has (RAVDESS's
    calm) would then fill an eighth of the draws with that corpus alone, and the model learns
    "sounds like RAVDESS" = calm (measured: 0.26 UAR, most held-out actors called calm)."""
    p = np.zeros(len(y))
    present = [k for k in share if np.any(corpus == k)]
    total = sum(share[k] for k in present)
    for k in present:
        in_c = corpus == k
        classes = np.unique(y[in_c])
        for cl in classes:
            in_cl = in_c & (y == cl)
            weight = {g: male_weight if g == "male" else 1.0 for g in np.unique(gender[in_cl])}
            for g, w in weight.items():
                sel = in_cl & (gender == g)
                p[sel] = share[k] / total / len(classes) * w / sum(weight.values()) / sel.sum()
    return p / p.sum()


@dataclass
class _Stats:
    """A device's statistics as ModelMetadata.normalise reads them (SpeechStats has the same two)."""

    mean: np.ndarray
    std: np.ndarray


class Sampler:
    """Batches of training windows: a weighted draw of utterances (classes, genders and corpora
    balanced), a copy (clean or augmented), a random alignment, normalisation, SpecAugment, mixup."""

    def __init__(self, c: Corpus, idx: np.ndarray, meta: ModelMetadata, recipe: CropRecipe, stats: dict | None,
                 teachers: list | None = None, soft: tuple | None = None):
        self.c, self.idx, self.meta, self.r, self.stats = c, idx, meta, recipe, stats
        self.soft, self.embedding = soft if soft is not None else (None, None)
        # compiled once (one batch shape): called eagerly, two teachers' forward passes took longer
        # than the student's training step
        self.teachers = [architectures.tf.function(lambda x, t=t: t(x, training=False)) for t in teachers or []]
        self.p = sampling_weights(c.corpus[idx], c.y[idx], c.gender[idx], dict(recipe.corpus_share),
                                  recipe.male_weight)
        self.transfer = np.isin(c.corpus, recipe.transfer_corpora)  # per utterance: the teachers' target only
        self.rng = np.random.default_rng(recipe.training_seed() + 7)
        self.frames = meta.frames
        self.noise = noise_power(meta.features) if recipe.noise_floor_p else None

    def window(self, i: int, rng) -> np.ndarray:
        c, r = self.c, self.r
        copy = 0 if (rng.random() < r.clean_fraction or c.sp.copies <= 2) else int(rng.integers(2, c.sp.copies))
        feat = c.sp.get(i, copy).astype(np.float32)
        mask = c.sp.speech_mask(i, copy)
        sidx = np.flatnonzero(mask)
        lo, hi = (sidx[0], sidx[-1]) if len(sidx) else (0, len(feat) - 1)
        q = self.frames // 4
        centre = int(rng.integers(lo - q, hi + q + 1))
        w = cut(feat, centre, self.frames, rng)
        if r.noise_floor_p and rng.random() < r.noise_floor_p:
            w = add_noise_floor(w, float(rng.uniform(*r.noise_floor_dbfs)), self.noise, rng)
        stats = None
        if r.normalisation == "device":
            key = (c.speaker[i], "clean" if copy == 0 else "aug")
            if r.household_p and rng.random() < r.household_p:
                key = (*key, "house")
            mean, std = self.stats[key]
            stats = _Stats(mean + rng.standard_normal(len(mean)).astype(np.float32) * r.stats_jitter, std)
        x = self.meta.normalise(w, stats)
        if r.freq_warp:
            x = warp_bands(x, float(rng.uniform(1 - r.freq_warp, 1 + r.freq_warp)), self.meta.features)
        if r.spec_augment:
            for _ in range(2):
                # masks set to 0: the mean of a normalised band (either normalisation)
                f0, fw = int(rng.integers(0, x.shape[1])), int(rng.integers(0, x.shape[1] // 8 + 1))
                x[:, f0 : f0 + fw] = 0.0
                t0, tw = int(rng.integers(0, x.shape[0])), int(rng.integers(0, x.shape[0] // 10 + 1))
                x[t0 : t0 + tw] = 0.0
        return x

    def batch(self):
        r, rng = self.r, self.rng
        pick = rng.choice(self.idx, size=r.batch_size, p=self.p)
        x = np.stack([self.window(i, rng) for i in pick])
        y = np.full((len(pick), len(LABELS)), r.label_smoothing / len(LABELS), np.float32)
        y[np.arange(len(pick)), self.c.y[pick]] += 1.0 - r.label_smoothing
        if self.soft is not None:  # the other teacher's view of each utterance (rows of NaN: none)
            row = self.soft[pick]
            has = np.isfinite(row[:, :1])
            y = np.where(has, (1.0 - r.soft_share) * y + r.soft_share * np.nan_to_num(row), y).astype(np.float32)
        w = np.where(self.transfer[pick], 1.0, r.distill).astype(np.float32)[:, None]  # the teachers' share
        e = np.nan_to_num(self.embedding[pick]) if self.embedding is not None else None
        if r.mixup and rng.random() < r.mixup:
            lam = rng.beta(0.4, 0.4, size=(len(pick), 1)).astype(np.float32)
            lam = np.maximum(lam, 1 - lam)  # the first sample stays the main one
            perm = rng.permutation(len(pick))
            x = lam[:, :, None] * x + (1 - lam[:, :, None]) * x[perm]
            y = lam * y + (1 - lam) * y[perm]
            w = lam * w + (1 - lam) * w[perm]
            e = lam * e + (1 - lam) * e[perm] if e is not None else None
        x = x[..., None]
        if self.teachers:  # the teachers see exactly this window; their mean probability is the soft label
            probs = [t(x).numpy() for t in self.teachers]
            if r.distill_temperature != 1.0:  # the label and the softened teachers, side by side (kd_loss)
                soft = np.mean([soften(p, r.distill_temperature) for p in probs], axis=0)
                return x, np.concatenate([y, soft.astype(np.float32)], axis=1)
            y = (1.0 - w) * y + w * np.mean(probs, axis=0).astype(np.float32)
        if e is not None:
            return x, (y, e.astype(np.float32))
        return x, y

    def __iter__(self):
        while True:
            yield self.batch()


# --------------------------------------------------------------------------------------------------
# Training


def soften(p: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at a temperature: softmax(log p / T), from probabilities (the models end in softmax)."""
    z = np.log(np.maximum(p, 1e-8)) / temperature
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def kd_loss(n_classes: int, temperature: float, distill: float):
    """Targets [label | softened teachers] -> (1 - distill) * CE(label) + distill * T^2 * CE(soft, student at T)."""
    tf = architectures.tf

    def loss(y, p):
        label, soft = y[:, :n_classes], y[:, n_classes:]
        log_p = tf.math.log(tf.maximum(p, 1e-8))
        hard = -tf.reduce_sum(label * log_p, axis=-1)
        student_t = tf.nn.log_softmax(log_p / temperature, axis=-1)
        return (1.0 - distill) * hard - distill * temperature**2 * tf.reduce_sum(soft * student_t, axis=-1)

    return loss


def fit(recipe: CropRecipe, sampler: Sampler, verbose: int = 2, val=None):
    tf = architectures.tf
    from .train import set_seeds

    set_seeds(recipe.training_seed())
    model = architectures.build(recipe.arch, sampler.frames, recipe.bands, len(LABELS))
    steps = recipe.steps_per_epoch or max(1, len(sampler.idx) // recipe.batch_size)
    cosine_steps = steps * recipe.epochs
    lr = tf.keras.optimizers.schedules.CosineDecay(recipe.learning_rate, cosine_steps, warmup_target=None)
    callbacks = []
    if recipe.swa_epochs:
        lr = _ThenConstant(lr, cosine_steps, recipe.swa_lr)
        callbacks = [_WeightAverage(after_step=cosine_steps, every=recipe.swa_every)]
    n = len(LABELS)
    if sampler.teachers and recipe.distill_temperature != 1.0:
        loss, width, metrics = kd_loss(n, recipe.distill_temperature, recipe.distill), 2 * n, []
    else:
        loss, width, metrics = tf.keras.losses.CategoricalCrossentropy(), n, ["accuracy"]
    trained, target_spec = model, tf.TensorSpec((None, width), tf.float32)
    if sampler.embedding is not None:  # a second head, training only: the encoder's view of the utterance
        dim = sampler.embedding.shape[1]
        head = architectures.layers.Dense(dim, name="embedding")(model.get_layer("scores").input)
        trained = architectures.keras.Model(model.input, [model.output, head])
        loss, metrics = [loss, "mse"], {"scores": metrics}
        target_spec = (target_spec, tf.TensorSpec((None, dim), tf.float32))
    trained.compile(optimizer=tf.keras.optimizers.Adam(lr), loss=loss, metrics=metrics,
                    loss_weights=[1.0, recipe.embedding_weight] if trained is not model else None)
    ds = tf.data.Dataset.from_generator(
        lambda: iter(sampler), output_signature=(tf.TensorSpec((None, sampler.frames, recipe.bands, 1), tf.float32),
                                                 target_spec)).prefetch(4)
    hist = trained.fit(ds, steps_per_epoch=steps, epochs=recipe.epochs + recipe.swa_epochs, verbose=verbose,
                     validation_data=val, callbacks=callbacks)
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    if recipe.swa_epochs:
        model.set_weights(callbacks[0].mean())
        recompute_batchnorm(model, sampler)
        history["swa_snapshots"] = [callbacks[0].n]
    return model, history


def fit_members(recipe: CropRecipe, c: Corpus, idx: np.ndarray, meta: ModelMetadata, stats, teachers: list,
                verbose: int = 2, soft: tuple | None = None):
    """`recipe.members` models trained on `idx`, one after the other (member i: train seed + i), and
    averaged into one. Returns the model, the training history and the last member's sampler."""
    models, hists = [], []
    for i in range(recipe.members):
        member = dataclasses.replace(recipe, train_seed=recipe.training_seed() + i) if i else recipe
        sampler = Sampler(c, idx, meta, member, stats, teachers, soft)
        model, hist = fit(member, sampler, verbose)
        models.append(model), hists.append(hist)
    if recipe.members == 1:
        return models[0], hists[0], sampler
    return architectures.averaged(models, recipe.model_arch()), {"members": hists}, sampler


class _ThenConstant(architectures.keras.optimizers.schedules.LearningRateSchedule):
    """`first` for `steps` steps, then the constant `rate` (stochastic weight averaging's phase)."""

    def __init__(self, first, steps: int, rate: float):
        self.first, self.steps, self.rate = first, steps, rate

    def __call__(self, step):
        tf = architectures.tf
        return tf.where(step < self.steps, self.first(tf.minimum(step, self.steps)), tf.cast(self.rate, tf.float32))

    def get_config(self):
        return {"first": self.first.get_config(), "steps": self.steps, "rate": self.rate}


class _WeightAverage(architectures.keras.callbacks.Callback):
    """The running mean of the model's weights, taken every `every` training steps after `after_step`."""

    def __init__(self, after_step: int, every: int):
        super().__init__()
        self.after_step, self.every, self.n, self.total, self.step = after_step, every, 0, None, 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step > self.after_step and (self.step - self.after_step) % self.every == 0:
            w = self.model.get_weights()
            self.total = w if self.total is None else [t + x for t, x in zip(self.total, w)]
            self.n += 1

    def mean(self) -> list:
        return [t / self.n for t in self.total]


def recompute_batchnorm(model, sampler: Sampler, batches: int = 100) -> None:
    """BatchNorm's moving statistics belong to the weights they were gathered with; averaged weights need
    their own. A plain mean over `batches` training batches (momentum (k-1)/k on the k-th batch)."""
    bns = [layer for layer in model.layers if isinstance(layer, architectures.layers.BatchNormalization)]
    saved = [layer.momentum for layer in bns]
    for k in range(1, batches + 1):
        for layer in bns:
            layer.momentum = (k - 1) / k
        model(sampler.batch()[0], training=True)  # eager: each call reads the momentum set above
    for layer, m in zip(bns, saved):
        layer.momentum = m


# --------------------------------------------------------------------------------------------------
# Evaluation: each held-out speaker as a device


def eval_windows(c: Corpus, test: np.ndarray, meta: ModelMetadata, recipe: CropRecipe, prior, copy: int = 0,
                 seed: int = 0, adapt: bool = True, noise_dbfs: float | None = None, household: bool = False,
                 groups: dict[int, int] | None = None):
    """Normalised windows of the test utterances at every alignment: (n, len(OFFSETS_S), frames, bands).

    "device" normalisation streams each held-out speaker's utterances in a random order through a fresh
    SpeechStats (the prior only at first); each utterance is normalised with what the device had learnt
    *before* it, then its speech is added: no utterance sees its own statistics. `noise_dbfs`: white noise
    at that level added to every utterance (a room's floor, as in the CV stream). `household`: one device
    for all the held-out speakers, their utterances interleaved in a random order (a home's voices share
    one set of statistics). `groups` (utterance -> voice group, edge/voicegroups.py): each device keeps a
    set of statistics per group, and an utterance without one takes the group of the one before it."""
    rng = np.random.default_rng(seed)
    rate = int(round(1 / meta.features.winstep))
    out = np.zeros((len(test), len(OFFSETS_S), meta.frames, recipe.bands), np.float32)
    speech_s_before = np.zeros(len(test))
    pos = {int(i): k for k, i in enumerate(test)}
    devices = [test] if household else [test[c.speaker[test] == s] for s in sorted(set(c.speaker[test].tolist()))]
    for heard in devices:
        by_group: dict[int, SpeechStats] = {}
        group = 0
        for i in rng.permutation(heard):
            group = groups.get(int(i), group) if groups is not None else 0
            st = None
            if recipe.normalisation == "device":
                if group not in by_group:
                    by_group[group] = SpeechStats(*prior, prior_s=recipe.prior_s)
                st = by_group[group]
            feat = c.sp.get(i, copy).astype(np.float32)
            mask = c.sp.speech_mask(i, copy)
            if noise_dbfs is not None:
                feat = add_noise_floor(feat, noise_dbfs, noise_power(meta.features), np.random.default_rng(i))
            centre = speech_centre(mask)
            k = pos[int(i)]
            for j, o in enumerate(OFFSETS_S):
                out[k, j] = meta.normalise(cut(feat, centre + int(o * rate), meta.frames, np.random.default_rng(i)), st)
            if st is not None:
                speech_s_before[k] = st.speech_s
                if adapt:  # adapt=False: a fresh device for every utterance (the prior only)
                    st.add(feat[mask])
    return out, speech_s_before


def predict_float(model, x: np.ndarray) -> np.ndarray:
    return model.predict(x.reshape(-1, *x.shape[-2:], 1), batch_size=256, verbose=0).reshape(*x.shape[:-2], -1)


def predict_tflite(path, x: np.ndarray) -> np.ndarray:
    clf = Classifier(path)
    flat = x.reshape(-1, *x.shape[-2:])
    return np.stack([clf.predict_normalised(w) for w in flat]).reshape(*x.shape[:-2], -1)


def scores(y, p_windows: np.ndarray, groups: dict) -> dict:
    """centred, clip (mean of the alignments) and any-alignment metrics, overall and per group."""
    centre = OFFSETS_S.index(0.0)
    res = {}
    for name, pred, yy, idx_fn in (
            ("centred", np.argmax(p_windows[:, centre], 1), y, lambda g: g),
            ("clip", np.argmax(p_windows.mean(axis=1), 1), y, lambda g: g),
            ("any_alignment", np.argmax(p_windows, 2).ravel(), np.repeat(y, p_windows.shape[1]),
             lambda g: np.repeat(g, p_windows.shape[1]))):
        res[name] = {"all": evaluate.metrics(yy, pred, LABELS)}
        for gname, g in groups.items():
            res[name][f"by_{gname}"] = evaluate.grouped(yy, pred, idx_fn(g), LABELS)
    return res


def _device_stats(recipe: CropRecipe, c: Corpus, idx: np.ndarray, prior) -> dict | None:
    """Per-speaker simulated device statistics for training (device normalisation only)."""
    if recipe.normalisation != "device":
        return None
    return speaker_stats(c, idx, prior, recipe, {"clean": [0], "aug": list(range(2, c.sp.copies))})


def _representative(sampler: Sampler, n: int = 300) -> np.ndarray:
    """Calibration windows for int8: training windows as the sampler makes them."""
    return np.concatenate([sampler.batch()[0][..., 0] for _ in range(6)])[:n]  # 6 batches >= 300 windows


def load_teachers(recipe: CropRecipe, tag: str) -> list:
    """The float models that teach `tag` (fold0.., or final), one per teacher run directory."""
    if not recipe.distill:
        return []
    paths = [Path(t) / f"{tag}-float.keras" for t in recipe.teachers]
    missing = [str(p) for p in paths if not p.exists()]
    if missing or not paths:
        raise SystemExit(f"distill={recipe.distill} needs the teachers' {tag}-float.keras; "
                         f"missing: {missing or 'teachers'}")
    return [architectures.tf.keras.models.load_model(p, compile=False) for p in paths]


def load_soft_targets(recipe: CropRecipe, c: Corpus, tag: str) -> tuple | None:
    """recipe.soft_targets' rows for `tag` (fold0.., final) in the corpus's utterance order (NaN: none), and
    the utterances' embeddings if embedding_weight is set: (soft or None, embedding or None)."""
    if not recipe.soft_targets:
        return None
    if not (recipe.soft_share or recipe.embedding_weight):
        raise SystemExit("soft_targets needs soft_share > 0 or embedding_weight > 0")
    d = np.load(recipe.soft_targets)
    if tag not in d.files or list(d["labels"]) != list(LABELS):
        raise SystemExit(f"{recipe.soft_targets}: no {tag!r} targets over the labels {LABELS}")
    row = {str(p): k for k, p in enumerate(d["paths"])}
    out = np.full((len(c.y), len(LABELS)), np.nan, np.float32)
    emb = np.full((len(c.y), d["embedding"].shape[1]), np.nan, np.float32) if recipe.embedding_weight else None
    for i, u in enumerate(c.utts):
        parts = Path(u.path).parts  # the manifest's path: from the corpus's directory (data_dir/<corpus>/...)
        k = row.get("/".join(parts[max(j for j, x in enumerate(parts) if x == u.corpus):]))
        if k is not None:
            out[i] = d[tag][k]
            if emb is not None:
                emb[i] = d["embedding"][k]
    return (out if recipe.soft_share else None), emb


def with_transfer(recipe: CropRecipe, c: Corpus, train: np.ndarray) -> np.ndarray:
    """The training utterances and, for a student, the transfer corpora's (recipe.transfer_corpora)."""
    if not recipe.transfer_corpora:
        return train
    if not recipe.teachers or not recipe.distill or recipe.distill_temperature != 1.0:
        raise SystemExit("transfer_corpora needs teachers, distill > 0 and distill_temperature 1")
    extra = np.flatnonzero(np.isin(c.corpus, recipe.transfer_corpora) & ~np.isin(c.corpus, recipe.corpora))
    return np.concatenate([train, extra])


def run_fold(recipe: CropRecipe, c: Corpus, train: np.ndarray, test: np.ndarray, out_dir: Path, tag: str,
             verbose: int = 2) -> dict:
    """Train on `train`, score `test` (float and int8; clean and 4 kHz low-pass). Returns predictions."""
    t0 = time.time()
    prior = prior_stats(c, train)
    meta = recipe.metadata(*prior, extra={"arch": recipe.model_arch(), "recipe": dataclasses.asdict(recipe),
                                          "recipe_hash": recipe.hash(), "fold": tag})
    pool = with_transfer(recipe, c, train)  # the prior stays the labelled training set's
    soft = load_soft_targets(recipe, c, tag)
    if soft is not None and soft[0] is not None and np.isfinite(soft[0][test, 0]).any():
        raise SystemExit(f"{recipe.soft_targets}: {tag} has targets for held-out utterances (another fold seed?)")
    model, hist, sampler = fit_members(recipe, c, pool, meta, _device_stats(recipe, c, pool, prior),
                                       load_teachers(recipe, tag), verbose, soft)
    model.save(out_dir / f"{tag}-float.keras")  # a teacher for a later distillation
    rep = _representative(sampler)
    int8_path = quantize.write_model(model, recipe.model_arch(), rep, meta, out_dir / f"{tag}-int8.tflite")
    x, before = eval_windows(c, test, meta, recipe, prior, copy=0, seed=recipe.seed)
    x_lp, _ = eval_windows(c, test, meta, recipe, prior, copy=1, seed=recipe.seed)
    x_noise, _ = eval_windows(c, test, meta, recipe, prior, copy=0, seed=recipe.seed, noise_dbfs=NOISY_ROOM_DBFS)
    p = {"float": predict_float(model, x), "int8": predict_tflite(int8_path, x),
         "int8_lowpass": predict_tflite(int8_path, x_lp), "int8_noise60": predict_tflite(int8_path, x_noise)}
    return {"p": p, "hist": hist, "minutes": (time.time() - t0) / 60, "params": int(model.count_params()),
            "int8_bytes": int8_path.stat().st_size, "speech_s_before": before, "model": model, "prior": prior,
            "meta": meta, "rep": rep, "int8_path": str(int8_path)}


def ravdess_folds(c: Corpus, k: int, seed: int) -> list[list[str]]:
    from .dataset import speaker_folds

    return speaker_folds(c.speaker, c.gender, k, seed)


def cross_validate(recipe: CropRecipe, out_dir: Path, data_dir=None, verbose: int = 2,
                   fold_ids: list[int] | None = None) -> dict:
    """Speaker-independent k-fold CV on RAVDESS actors (the other corpora always train).

    `fold_ids` runs only those folds (two processes can share one run directory, one core each); the
    report is then built from every fold whose predictions are in the directory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "recipe.json").write_text(json.dumps(dataclasses.asdict(recipe), indent=2))
    c = load(recipe, data_dir)
    folds = ravdess_folds(c, recipe.folds, recipe.seed)
    if recipe.max_folds:
        folds = folds[: recipe.max_folds]
    for k, held_out in enumerate(folds):
        if fold_ids is not None and k not in fold_ids:
            continue
        test = np.flatnonzero(np.isin(c.speaker, held_out))
        train = np.flatnonzero(~np.isin(c.speaker, held_out) & in_recipe(c, recipe))
        print(f"fold {k + 1}/{len(folds)}: held out {held_out}; {len(train)} training utterances", flush=True)
        r = run_fold(recipe, c, train, test, out_dir, f"fold{k}", verbose)
        s = scores(c.y[test], r["p"]["int8"], {})
        row = {"fold": k, "held_out": " ".join(held_out), "minutes": round(r["minutes"], 1),
               "int8 centred UAR": s["centred"]["all"]["uar"], "int8 clip UAR": s["clip"]["all"]["uar"],
               "int8 any-alignment UAR": s["any_alignment"]["all"]["uar"],
               "float clip UAR": scores(c.y[test], r["p"]["float"], {})["clip"]["all"]["uar"],
               "agreement": evaluate.agreement(r["p"]["float"].reshape(-1, len(LABELS)),
                                               r["p"]["int8"].reshape(-1, len(LABELS))),
               "params": r["params"], "int8_bytes": r["int8_bytes"]}
        print(json.dumps(row), flush=True)
        (out_dir / f"fold{k}-row.json").write_text(json.dumps(row))
        (out_dir / f"fold{k}-history.json").write_text(json.dumps(r["hist"]))
        np.savez(out_dir / f"fold{k}-predictions.npz", test=test, y=c.y[test], **r["p"])
    return report_from_folds(recipe, c, folds, out_dir)


def report_from_folds(recipe: CropRecipe, c: Corpus, folds, out_dir: Path) -> dict:
    """cv.json and cv.md from the fold predictions present in `out_dir`."""
    done = [k for k in range(len(folds)) if (out_dir / f"fold{k}-predictions.npz").exists()]
    ys, idxs, ps, rows = [], [], {"float": [], "int8": [], "int8_lowpass": [], "int8_noise60": []}, []
    for k in done:
        d = np.load(out_dir / f"fold{k}-predictions.npz")
        ys.append(d["y"])
        idxs.append(d["test"])
        for key in ps:
            if key in d:  # runs before the noisy copy existed have no int8_noise60
                ps[key].append(d[key])
        rows.append(json.loads((out_dir / f"fold{k}-row.json").read_text()))
    ps = {k: v for k, v in ps.items() if len(v) == len(done)}
    y, idx = np.concatenate(ys), np.concatenate(idxs)
    report = {"recipe": dataclasses.asdict(recipe), "recipe_hash": recipe.hash(), "folds": folds,
              "folds_done": done, "sizes": {"params": rows[-1]["params"], "int8_bytes": rows[-1]["int8_bytes"]},
              "split": "speaker-independent (RAVDESS actors held out; other corpora always in training)",
              "fold_rows": rows}
    for key, plist in ps.items():
        report[key] = scores(y, np.concatenate(plist), {"gender": c.gender[idx]})
    report["int8_float_agreement"] = evaluate.agreement(np.concatenate(ps["float"]).reshape(-1, len(LABELS)),
                                                        np.concatenate(ps["int8"]).reshape(-1, len(LABELS)))
    evaluate.write_json(report, out_dir / "cv.json")
    write_cv_report(report, out_dir)
    return report


def write_cv_report(r: dict, out_dir: Path) -> None:
    lines = [
        f"# Cross-validation: {r['recipe']['arch']}"
        + (f" × {r['recipe']['members']} averaged" if r["recipe"].get("members", 1) > 1 else "")
        + f" (crop recipe {r['recipe_hash']})",
        "",
        f"Split: {r['split']}. Folds scored: {len(r['folds_done'])} of {len(r['folds'])}. "
        f"Window {r['recipe']['window_s']} s, "
        f"{r['recipe']['bands']} bands, normalisation {r['recipe']['normalisation']}.",
        "",
        "| | centred UAR | clip UAR | any-alignment UAR | clip UAR men / women | clip accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for key in ("float", "int8", "int8_lowpass", "int8_noise60"):
        if key not in r:
            continue
        s = r[key]
        g = s["clip"]["by_gender"]
        lines.append(
            f"| {key.replace('_', ' ')} | {s['centred']['all']['uar']:.3f} | {s['clip']['all']['uar']:.3f} | "
            f"{s['any_alignment']['all']['uar']:.3f} | {g.get('male', {}).get('uar', float('nan')):.3f} / "
            f"{g.get('female', {}).get('uar', float('nan')):.3f} | {s['clip']['all']['accuracy']:.3f} |"
        )
    pc = r["int8"]["clip"]["all"]["per_class"]
    lines += [
        "",
        "int8 clip recall per class: " + ", ".join(f"{k} {v['recall']:.2f}" for k, v in pc.items()),
        f"int8 vs float top-1 agreement (every window): {r['int8_float_agreement']:.3f}",
        f"Sizes: {r['sizes']}",
        "",
        evaluate.markdown_table(r["fold_rows"], list(r["fold_rows"][0].keys())),
    ]
    (out_dir / "cv.md").write_text("\n".join(lines) + "\n")
    try:  # the model card's plots: int8, per utterance (clip), all scored folds pooled
        title = f"{r['recipe']['arch']} int8, clip, {len(r['folds_done'])} folds of held-out speakers"
        clip = r["int8"]["clip"]["all"]
        evaluate.plot_confusion(clip["confusion"], LABELS, out_dir / "confusion-int8.png",
                                f"{title}: UAR {clip['uar']:.3f}")
        evaluate.plot_per_class(clip, LABELS, out_dir / "per-class-int8.png", title)
    except ImportError:  # matplotlib is in the train extra; the report stands without the plots
        pass


def cv_summary(cv_report: dict) -> dict:
    """The numbers of a crop CV's cv.json that a model carries in its metadata (and its model card shows)."""
    summary = {
        k: {m: cv_report[k][m]["all"]["uar"] for m in ("centred", "clip", "any_alignment")}
        for k in ("float", "int8", "int8_lowpass")
    }
    summary["split"] = cv_report["split"]
    return summary


def stamp_cv(model_path: Path, cv_report: dict) -> None:
    """Write a finished CV's numbers into a trained model's metadata; the weights are not touched. (The
    final model can train while the CV's last folds still run.)"""
    from edge.model import Classifier

    meta = Classifier(model_path).meta
    meta.extra["cv"] = cv_summary(cv_report)
    model_path.write_bytes(quantize.embed_metadata(model_path.read_bytes(), meta))


def training_data(recipe: CropRecipe) -> list[str]:
    """The corpora a model learnt from, with their licences: the transfer corpora too (their audio, with
    the teachers' targets: a licence applies whether or not the labels were used)."""
    return [LICENCES.get(k, k) for k in recipe.corpora] + [
        f"{LICENCES.get(k, k)} (audio only, teachers' targets)" for k in recipe.transfer_corpora
        if k not in recipe.corpora]


def train_final(
    recipe: CropRecipe, out_path: Path, data_dir=None, cv_report: dict | None = None, verbose: int = 2,
    float_path: Path | None = None,
) -> Path:
    """Train on every utterance of the recipe's corpora and write the int8 model with its metadata."""
    c = load(recipe, data_dir)
    idx = np.flatnonzero(in_recipe(c, recipe))
    prior = prior_stats(c, idx)
    extra = {
        "arch": recipe.model_arch(),
        "recipe": dataclasses.asdict(recipe),
        "recipe_hash": recipe.hash(),
        "version": "0.2.0",
        "training_data": training_data(recipe),
        "trained_on": summary([c.utts[i] for i in idx]),
        "licence_note": "trained on non-commercial / research-only corpora: research and non-commercial use only",
    }
    if cv_report:
        extra["cv"] = cv_summary(cv_report)
    meta = recipe.metadata(*prior, extra=extra)
    pool = with_transfer(recipe, c, idx)
    model, _, sampler = fit_members(recipe, c, pool, meta, _device_stats(recipe, c, pool, prior),
                                    load_teachers(recipe, "final"), verbose, load_soft_targets(recipe, c, "final"))
    if float_path is not None:
        float_path.parent.mkdir(parents=True, exist_ok=True)
        model.save(float_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    quantize.write_model(model, recipe.model_arch(), _representative(sampler), meta, out_path)
    problems = quantize.check_int8(str(out_path))
    if problems:
        raise RuntimeError(f"{out_path}: not a clean full-int8 model: {problems}")
    return out_path


def rescore(run_dir: Path, recipe: CropRecipe, data_dir=None) -> dict:
    """Score a finished CV's int8 fold models again, in every way a device meets speech: adapted to the
    held-out speaker (a stream), the prior only (one clip on a fresh device, like `analyze --clip`), and
    adapted through a 4 kHz low-pass channel, adapted in a room with a -60 dBFS noise floor, and a household:
    one device adapted to all the fold's held-out speakers at once; the last two again with a set of
    statistics per voice group (edge/voicegroups.py). Writes rescore.json beside cv.json."""
    from . import voicegroups  # it imports this module's Corpus

    c = load(recipe, data_dir, progress=False)
    cv = json.loads((run_dir / "cv.json").read_text())
    ys, idxs, ps = (
        [],
        [],
        {"int8_adapted": [], "int8_prior_only": [], "int8_lowpass_adapted": [], "int8_noise60_adapted": [],
         "int8_household_adapted": [], "int8_adapted_voice_groups": [], "int8_household_voice_groups": []},
    )
    pitch = voicegroups.utterance_pitch(c)
    for k, held_out in enumerate(cv["folds"]):
        if k not in cv.get("folds_done", range(len(cv["folds"]))):
            continue
        test = np.flatnonzero(np.isin(c.speaker, held_out))
        train = np.flatnonzero(~np.isin(c.speaker, held_out) & in_recipe(c, recipe))
        clf_path = run_dir / f"fold{k}-int8.tflite"
        meta = Classifier(clf_path).meta
        prior = (
            (np.asarray(meta.mean), np.asarray(meta.scale)) if meta.normalisation == "device" else prior_stats(c, train)
        )
        # the voice-group classifier as `ser-convert voice-groups` fits it, on every voice but the fold's
        everyone_else = np.flatnonzero(~np.isin(c.speaker, held_out))
        vg = voicegroups.fit_groups(c, everyone_else, pitch, meta.features.to_dict())
        groups = voicegroups.assign(c, test, pitch, vg)
        for key, copy, adapt, noise, household, by_group in (
            ("int8_adapted", 0, True, None, False, None),
            ("int8_prior_only", 0, False, None, False, None),
            ("int8_lowpass_adapted", 1, True, None, False, None),
            ("int8_noise60_adapted", 0, True, NOISY_ROOM_DBFS, False, None),
            ("int8_household_adapted", 0, True, None, True, None),
            ("int8_adapted_voice_groups", 0, True, None, False, groups),
            ("int8_household_voice_groups", 0, True, None, True, groups),
        ):
            x, _ = eval_windows(c, test, meta, recipe, prior, copy=copy, seed=recipe.seed, adapt=adapt,
                                noise_dbfs=noise, household=household, groups=by_group)
            ps[key].append(predict_tflite(clf_path, x))
        ys.append(c.y[test])
        idxs.append(test)
    y, idx = np.concatenate(ys), np.concatenate(idxs)
    out = {"run": str(run_dir), "recipe_hash": recipe.hash(), "folds": [cv["folds"][k] for k in cv["folds_done"]]}
    for key, plist in ps.items():
        out[key] = scores(y, np.concatenate(plist), {"gender": c.gender[idx]})
    evaluate.write_json(out, run_dir / "rescore.json")
    return out


FOUR = ("neutral", "happy", "sad", "angry")


def without_corpus(recipe: CropRecipe, held: str) -> CropRecipe:
    """The recipe with `held` out of its transfer corpora: a student held out from a corpus never hears it,
    not even unlabelled. (Its teachers' loco-<held> models must not have either: e.g. a RAVDESS+TESS
    teacher's final model, when nEMO or URDU is held out.)"""
    return dataclasses.replace(recipe, transfer_corpora=tuple(k for k in recipe.transfer_corpora if k != held))


def leave_one_corpus_out(recipe: CropRecipe, held: str, out_dir: Path, data_dir=None, verbose: int = 2) -> dict:
    """Train on the other corpora, score every speaker of `held` on the four classes all corpora share
    (argmax over those four outputs), each speaker as a device (adapted) and as single clips (prior only)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = without_corpus(recipe, held)
    c = load(recipe, data_dir, progress=False)
    four = [LABELS.index(k) for k in FOUR]
    test = np.flatnonzero((c.corpus == held) & np.isin(c.y, four))
    train = np.flatnonzero((c.corpus != held) & in_recipe(c, recipe))
    r = run_fold(recipe, c, train, test, out_dir, f"loco-{held}", verbose)
    x, _ = eval_windows(c, test, r["meta"], recipe, r["prior"], copy=0, seed=recipe.seed, adapt=False)
    p = {"int8_adapted": r["p"]["int8"], "int8_prior_only": predict_tflite(r["int8_path"], x), "float": r["p"]["float"]}
    y4 = np.searchsorted(four, c.y[test])  # four is sorted: neutral 0, happy 2, sad 3, angry 4
    res = {
        "held_out_corpus": held,
        "recipe_hash": recipe.hash(),
        "n": int(len(test)),
        "speakers": int(len(set(c.speaker[test].tolist()))),
        "minutes": r["minutes"],
    }
    for key, pp in p.items():
        sub = pp[..., four]
        clip = np.argmax(sub.mean(axis=1), 1)
        m = evaluate.metrics(y4, clip, list(FOUR))
        res[key] = {
            "clip_uar": m["uar"],
            "per_class": {k: v["recall"] for k, v in m["per_class"].items()},
            "any_alignment_uar": evaluate.metrics(np.repeat(y4, sub.shape[1]), np.argmax(sub, 2).ravel(), list(FOUR))[
                "uar"
            ],
        }
    evaluate.write_json(res, out_dir / f"loco-{held}.json")
    print(
        json.dumps({k: res[k] for k in ("held_out_corpus", "n")} | {k: round(res[k]["clip_uar"], 3) for k in p}),
        flush=True,
    )
    return res


def affect_report(run_dir: Path, data_dir=None) -> dict:
    """Arousal and valence (edge/affect.py) of a finished CV's int8 clip predictions on the held-out
    RAVDESS actors (evaluate.affect_scores); writes affect.json beside cv.json."""
    from .corpora import load_corpora

    utts = load_corpora(data_dir, ALL_CORPORA)
    ys, ps, idx = [], [], []
    for f in sorted(run_dir.glob("fold*-predictions.npz")):
        d = np.load(f)
        ys.append(d["y"])
        ps.append(d["int8"].mean(axis=1))  # clip: the mean of the alignments
        idx.append(d["test"])
    test = np.concatenate(idx)
    # RAVDESS file names: modality-channel-emotion-intensity-statement-repetition-actor; 02 = strong
    strong = np.array([Path(utts[i].path).name.split("-")[3] == "02" for i in test])
    out = {
        "run": str(run_dir),
        "folds": len(ys),
        **evaluate.affect_scores(np.concatenate(ps), np.concatenate(ys), strong, list(LABELS)),
    }
    evaluate.write_json(out, run_dir / "affect.json")
    return out
