"""Each seed paper's network, and the registry of seeds (recipe + network + what the paper claims)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .features import (
    feat_logmel40_deltas,
    feat_logmel128_mfcc13,
    feat_logmel_lflb,
    feat_ours_window,
    feat_raw_3s,
    feat_rms_zcr_mfcc_3s,
    feat_rms_zcr_mfcc_offset,
)


def _tf():
    from ..architectures import tf

    return tf


def adrnn_clstm(shapes, n):
    """Seed 1: dilated residual convolutions + BiLSTM + attention on the log-mel image; MFCC -> dense
    up-sampling -> Conv2D -> ConvLSTM2D; fused, dense layers with dropout."""
    tf = _tf()
    L = tf.keras.layers
    img, vec = tf.keras.Input(shapes[0], name="logmel"), tf.keras.Input(shapes[1], name="mfcc")
    x = L.Conv2D(32, 3, padding="same", activation="relu")(img)
    for rate, ch in ((1, 32), (2, 64), (4, 64), (8, 128)):
        sc = L.Conv2D(ch, 1)(x)
        y = L.Conv2D(ch, 3, padding="same", dilation_rate=rate)(x)
        y = L.ReLU()(L.BatchNormalization()(y))
        y = L.Conv2D(ch, 3, padding="same", dilation_rate=rate)(y)
        y = L.BatchNormalization()(y)
        x = L.MaxPooling2D(2)(L.ReLU()(L.Add()([sc, y])))  # 128 -> 8 over four blocks
    t, f, c = x.shape[1:]
    seq = L.Bidirectional(L.LSTM(64, return_sequences=True))(L.Reshape((t, f * c))(x))
    score = L.Dense(1, activation="tanh")(seq)
    weights = L.Softmax(axis=1)(score)
    a = L.Lambda(lambda z: tf.reduce_sum(z[0] * z[1], axis=1))([seq, weights])
    m = L.Dense(256, activation="relu")(vec)  # up-sample 13 -> 4x8x8
    m = L.Reshape((4, 8, 8, 1))(m)
    m = L.TimeDistributed(L.Conv2D(8, 3, padding="same", activation="relu"))(m)
    m = L.Flatten()(L.ConvLSTM2D(8, 3, padding="same")(m))
    z = L.Concatenate()([a, m])
    z = L.Dropout(0.3)(L.Dense(128, activation="relu")(z))
    z = L.Dropout(0.3)(L.Dense(64, activation="relu")(z))
    return tf.keras.Model([img, vec], L.Dense(n, activation="softmax")(z), name="adrnn_clstm")


def acrnn(shapes, n):
    """Seed 2: 5x2 convolutions with 128 then 256 maps, one 2x2 max-pool, a 768-unit linear layer per time
    step, BiLSTM 128 per direction, attention pooling, dense 64 + batch norm, softmax."""
    tf = _tf()
    L = tf.keras.layers
    inp = tf.keras.Input(shapes[0], name="logmel_deltas")
    x = L.Conv2D(128, (5, 2), padding="same", activation="relu")(inp)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(256, (5, 2), padding="same", activation="relu")(x)
    t, f, c = x.shape[1:]
    x = L.Dense(768)(L.Reshape((t, f * c))(x))
    seq = L.Bidirectional(L.LSTM(128, return_sequences=True))(x)
    weights = L.Softmax(axis=1)(L.Dense(1, activation="tanh")(seq))
    a = L.Lambda(lambda z: tf.reduce_sum(z[0] * z[1], axis=1))([seq, weights])
    z = L.ReLU()(L.BatchNormalization()(L.Dense(64)(a)))
    return tf.keras.Model(inp, L.Dense(n, activation="softmax")(z), name="acrnn")


def _lstm_stack(shapes, n, bidirectional: bool, name: str):
    tf = _tf()
    L = tf.keras.layers
    wrap = (lambda layer: L.Bidirectional(layer)) if bidirectional else (lambda layer: layer)
    inp = tf.keras.Input(shapes[0], name="rms_zcr_mfcc")
    x = wrap(L.LSTM(64, return_sequences=True))(inp)
    x = wrap(L.LSTM(64))(x)
    return tf.keras.Model(inp, L.Dense(n, activation="softmax")(x), name=name)


def lstm_rms_zcr_mfcc(shapes, n):
    """Seed 3: two LSTM layers of 64 on per-frame RMS, ZCR and MFCC."""
    return _lstm_stack(shapes, n, False, "lstm_rms_zcr_mfcc")


def bilstm_rms_zcr_mfcc(shapes, n):
    """Seed 3, bidirectional variant."""
    return _lstm_stack(shapes, n, True, "bilstm_rms_zcr_mfcc")


def _lflb_stack(x, conv, pool, pools):
    L = _tf().keras.layers
    for maps, p in zip((64, 64, 128, 128), pools):
        x = L.ELU()(L.BatchNormalization()(conv(maps)(x)))
        x = pool(p)(x)
    return x


def cnn_lstm_2d_lflb(shapes, n):
    """Seed 4: four local-feature-learning blocks (3x3 conv, batch norm, ELU, max-pool 2/4/4/4; 64, 64,
    128, 128 maps) on the log-mel, an LSTM of 256, softmax."""
    tf = _tf()
    L = tf.keras.layers
    inp = tf.keras.Input(shapes[0], name="logmel")
    x = _lflb_stack(inp, lambda m: L.Conv2D(m, 3, padding="same"), L.MaxPooling2D, (2, 4, 4, 4))
    t, f, c = x.shape[1:]
    x = L.LSTM(256)(L.Reshape((t, f * c))(x))
    return tf.keras.Model(inp, L.Dense(n, activation="softmax")(x), name="cnn_lstm_2d_lflb")


def cnn_lstm_1d(shapes, n):
    """Seed 4: the same blocks in 1-D on the raw waveform (pools 4/4/4/4), LSTM 256."""
    tf = _tf()
    L = tf.keras.layers
    inp = tf.keras.Input(shapes[0], name="waveform")
    x = _lflb_stack(inp, lambda m: L.Conv1D(m, 3, padding="same"), L.MaxPooling1D, (4, 4, 4, 4))
    x = L.LSTM(256)(x)
    return tf.keras.Model(inp, L.Dense(n, activation="softmax")(x), name="cnn_lstm_1d")


def cnn1d_zcr_rms_mfcc(shapes, n):
    """Seed 5: Conv1D 512/512/256/256/128 (kernel 5) with batch norm and max-pool, dense 512, softmax."""
    tf = _tf()
    L = tf.keras.layers
    inp = tf.keras.Input(shapes[0], name="zcr_rms_mfcc")
    x = inp
    for maps in (512, 512, 256, 256, 128):
        x = L.Conv1D(maps, 5, padding="same", activation="relu")(x)
        x = L.MaxPooling1D(2, padding="same")(L.BatchNormalization()(x))
    x = L.Dropout(0.2)(L.Dense(512, activation="relu")(L.Flatten()(x)))
    return tf.keras.Model(inp, L.Dense(n, activation="softmax")(x), name="cnn1d_zcr_rms_mfcc")


def dscnn_ours(shapes, n):
    """Our compact model (converter.architectures.dscnn), trained here under the zoo's protocol."""
    from ..architectures import dscnn

    return dscnn(shapes[0][0], shapes[0][1], n)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Seed:
    name: str
    source: str  # which seed system (numbered as in issue 7)
    paper_claim: str
    features: Callable
    build: Callable
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    budget_epochs: int = 5  # what two CPU cores allow (see ZooSettings)
    notes: str = ""


SEEDS = {s.name: s for s in [
    Seed("adrnn_clstm", "1", "92.36 % on RAVDESS, random 80/20 split, 20 epochs", feat_logmel128_mfcc13,
         adrnn_clstm, notes="channel widths 32-128 and ConvLSTM of 8 maps are our choice"),
    Seed("acrnn", "2", "68 % on IEMOCAP (4 classes, leave-speaker-out)", feat_logmel40_deltas, acrnn,
         batch_size=32, notes="3-D log-mel (static, delta, delta-delta)"),
    Seed("lstm_rms_zcr_mfcc", "3", "96-97 % on RAVDESS + TESS, random split", feat_rms_zcr_mfcc_3s,
         lstm_rms_zcr_mfcc, optimizer="rmsprop", budget_epochs=30),
    Seed("bilstm_rms_zcr_mfcc", "3", "96-97 % on RAVDESS + TESS, random split", feat_rms_zcr_mfcc_3s,
         bilstm_rms_zcr_mfcc, optimizer="rmsprop", budget_epochs=30),
    Seed("cnn_lstm_2d_lflb", "4", "80.68 % validation on EmoDB", feat_logmel_lflb, cnn_lstm_2d_lflb),
    Seed("cnn_lstm_1d", "4", "80.68 % (2-D) on EmoDB; 1-D lower", feat_raw_3s, cnn_lstm_1d),
    Seed("dscnn_ours", "ours", "—", feat_ours_window, dscnn_ours, budget_epochs=30,
         notes="our compact model under the zoo protocol: no augmentation, same data and fold"),
    Seed("cnn1d_zcr_rms_mfcc", "5", "96.03 % on combined corpora, random split", feat_rms_zcr_mfcc_offset,
         cnn1d_zcr_rms_mfcc, budget_epochs=30, notes="frames as the time axis, 22 features as channels"),
]}
