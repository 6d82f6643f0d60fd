"""Model architectures. Built with tf_keras (legacy Keras 2): on TF 2.21 it is the path on which the
converter emits one fused int8 UNIDIRECTIONAL_SEQUENCE_LSTM; Keras 3 crashes while full-int8
quantising an LSTM (see docs/RESULTS.md)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

keras = tf.keras
layers = keras.layers


def _conv_bn_relu(x, width: int, kernel, stride=(1, 1)):
    x = layers.Conv2D(width, kernel, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def _ds_block(x, width: int, stride):
    """Depthwise 3x3 (with stride) + BN + ReLU, then pointwise 1x1 to `width` + BN + ReLU."""
    x = layers.DepthwiseConv2D((3, 3), strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    return _conv_bn_relu(x, width, (1, 1))


def dscnn(frames: int, bands: int, n_classes: int, width: int = 64, blocks: int = 4, dropout: float = 0.3,
          batch_size: int | None = None) -> keras.Model:
    """MobileNet-style: one full convolution, then depthwise-separable blocks, global average pooling."""
    inp = keras.Input((frames, bands, 1), batch_size=batch_size, name="features")
    x = _conv_bn_relu(inp, width // 2, (5, 5), (2, 2))
    for i in range(blocks):
        x = _ds_block(x, width, (2, 2) if i in (0, 2) else (1, 1))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(n_classes, activation="softmax", name="scores")(x)
    return keras.Model(inp, out, name="dscnn")


def cnn_lstm(frames: int, bands: int, n_classes: int, channels: int = 32, lstm_units: int = 64,
             dropout: float = 0.3, batch_size: int | None = None) -> keras.Model:
    """Compact CNN-LSTM: three conv blocks shrink frequency and time, an LSTM reads the sequence."""
    inp = keras.Input((frames, bands, 1), batch_size=batch_size, name="features")
    x = inp
    for c, pool in ((channels, (2, 2)), (channels * 2, (2, 2)), (channels * 2, (1, 2))):
        x = layers.Conv2D(c, (3, 3), padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(pool)(x)
    x = layers.Conv2D(channels, (1, 1), activation="relu")(x)  # fewer features per time step
    t, f, c = x.shape[1], x.shape[2], x.shape[3]
    x = layers.Reshape((t, f * c))(x)
    x = layers.LSTM(lstm_units)(x)
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(n_classes, activation="softmax", name="scores")(x)
    return keras.Model(inp, out, name="cnn_lstm")


def _dscnn2_blocks(inp, widths):
    """dscnn2's convolutions: a strided full convolution, then depthwise-separable blocks."""
    x = _conv_bn_relu(inp, widths[0], (3, 3), (2, 2))
    for i, w in enumerate(widths[1:]):
        # most blocks at 1/8 and 1/16 resolution: few MACs
        x = _ds_block(x, w, (2, 2) if i in (0, 1, 3) else (1, 1))
    return x


def dscnn2(frames: int, bands: int, n_classes: int, widths=(32, 48, 64, 96, 128, 160), dropout: float = 0.3,
           batch_size: int | None = None) -> keras.Model:
    """The wider MobileNet-style model: a strided full convolution, then depthwise-separable blocks
    whose resolution halves early while the channels grow (the parameters sit where the positions are
    few, so MACs stay low: ~9 M for 3 s x 64 bands); then mean and max over time and frequency,
    concatenated (a cheap pooling that keeps a short strong cue, which plain averaging dilutes)."""
    inp = keras.Input((frames, bands, 1), batch_size=batch_size, name="features")
    x = _dscnn2_blocks(inp, widths)
    x = layers.Concatenate()([layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)])
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(n_classes, activation="softmax", name="scores")(x)
    return keras.Model(inp, out, name="dscnn2")


def dscnn2_small(frames, bands, n_classes, batch_size=None):
    return dscnn2(frames, bands, n_classes, widths=(24, 32, 48, 64, 96, 128), batch_size=batch_size)


def dscnn2_wide(frames, bands, n_classes, batch_size=None):
    """dscnn2 with its last two blocks wider (192, 256): 1.7x the parameters where the positions are
    fewest, so ~1.1x the inference time (bench) and ~125 KB int8."""
    return dscnn2(frames, bands, n_classes, widths=(32, 48, 64, 96, 192, 256), batch_size=batch_size)


def dscnn2_lstm(frames: int, bands: int, n_classes: int, widths=(32, 48, 64, 96, 128, 160), units: int = 64,
                dropout: float = 0.3, batch_size: int | None = None) -> keras.Model:
    """A CRNN on dscnn2's blocks: the same convolutions, then an LSTM reads the frequency-averaged
    feature sequence (19 steps for 3 s) and its last state joins the mean and max pooling. The LSTM
    sees how the voice moves over the window, which pooling throws away; a 1x1 projection to `units`
    first keeps it small (~96k parameters). Fused to one int8 UNIDIRECTIONAL_SEQUENCE_LSTM."""
    inp = keras.Input((frames, bands, 1), batch_size=batch_size, name="features")
    x = _dscnn2_blocks(inp, widths)
    pooled = [layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)]
    seq = _conv_bn_relu(x, units, (1, 1))
    seq = layers.AveragePooling2D((1, seq.shape[2]), name="over_frequency")(seq)
    seq = layers.Reshape((seq.shape[1], units))(seq)
    seq = layers.LSTM(units)(seq)
    x = layers.Concatenate()(pooled + [seq])
    x = layers.Dropout(dropout)(x)
    out = layers.Dense(n_classes, activation="softmax", name="scores")(x)
    return keras.Model(inp, out, name="dscnn2_lstm")


ARCHITECTURES = {"dscnn": dscnn, "cnn_lstm": cnn_lstm, "dscnn2": dscnn2, "dscnn2_small": dscnn2_small,
                 "dscnn2_wide": dscnn2_wide, "dscnn2_lstm": dscnn2_lstm}


def averaged(members: list, name: str) -> keras.Model:
    """One model whose scores are the mean of its members' (an ensemble in one .tflite file: the device
    runs it like any other model). The weights are the members' in order."""
    inp = keras.Input(members[0].input_shape[1:], batch_size=members[0].input_shape[0], name="features")
    outs = [keras.Model(m.input, m.output, name=f"member{i}")(inp) for i, m in enumerate(members)]
    return keras.Model(inp, layers.Average(name="scores")(outs), name=name)


def build(arch: str, frames: int, bands: int, n_classes: int, batch_size: int | None = None) -> keras.Model:
    """`arch` names one architecture, or n of them averaged: "dscnn2x2" is two dscnn2 (see `averaged`)."""
    base, x, n = arch.rpartition("x")
    if x and base in ARCHITECTURES and n.isdigit() and int(n) > 1:
        return averaged([build(base, frames, bands, n_classes, batch_size) for _ in range(int(n))], arch)
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)} "
                         "or one of them averaged n times (dscnn2x2)")
    return ARCHITECTURES[arch](frames, bands, n_classes, batch_size=batch_size)
