"""Each seed paper's input features, through edge.features (one function per recipe)."""

from __future__ import annotations

import numpy as np

from edge import features as F

from ..dataset import crop, speech_centre

SR = 16000


def _fixed(x: np.ndarray, seconds: float) -> np.ndarray:
    """`seconds` of audio centred on the speech (padding with faint noise, like our window crops)."""
    return crop(x, speech_centre(x), int(seconds * SR))


def _fit_frames(feat: np.ndarray, frames: int) -> np.ndarray:
    out = np.zeros((frames, feat.shape[1]), np.float32)
    out[: min(frames, len(feat))] = feat[:frames]
    return out


def feat_logmel128_mfcc13(x):
    """Seed 1 hybrid: a 128x128 log-mel image (3 s, hop 3 s/128) and the 13 MFCCs averaged over the utterance."""
    y = _fixed(x, 3.0)
    image = _fit_frames(F.logfbank(y, SR, winlen=0.025, winstep=3.0 / 128, nfilt=128, nfft=1024), 128)
    mfcc = F.mfcc(x, SR, numcep=13).mean(axis=0).astype(np.float32)
    return [image[..., None], mfcc]


def feat_logmel40_deltas(x):
    """Seed 2 ACRNN: 40 log-mel bands, 25 ms / 10 ms, 3 s; static, delta and delta-delta as three channels."""
    y = _fixed(x, 3.0)
    mel = _fit_frames(F.logfbank(y, SR, nfilt=40), 300)
    d1 = F.delta(mel, 2)
    d2 = F.delta(d1, 2)
    return [np.stack([mel, d1, d2], axis=-1).astype(np.float32)]


def _rms_zcr_mfcc(y, numcep=20):
    """Per frame of 2048 samples, hop 512 (librosa's defaults, as in seeds 3 and 5): RMS, ZCR and 20 MFCCs."""
    kw = dict(winlen=2048 / SR, winstep=512 / SR)
    m = F.mfcc(y, SR, numcep=numcep, nfilt=40, nfft=2048, **kw)
    return np.column_stack([F.frame_rms(y, SR, **kw), F.frame_zcr(y, SR, **kw), m]).astype(np.float32)


def feat_rms_zcr_mfcc_3s(x):
    """Seed 3: RMS, ZCR, MFCC per frame over 3 s."""
    return [_fit_frames(_rms_zcr_mfcc(_fixed(x, 3.0)), 94)]


def feat_logmel_lflb(x):
    """Seed 4 2-D: log-mel (128 bands) of 3 s at 11.7 ms hop -> 256 frames."""
    y = _fixed(x, 3.0)
    return [_fit_frames(F.logfbank(y, SR, winstep=3.0 / 256, nfilt=128, nfft=1024), 256)[..., None]]


def feat_raw_3s(x):
    """Seed 4 1-D: the waveform itself, 3 s."""
    y = _fixed(x, 3.0)
    return [(y / (np.max(np.abs(y)) + 1e-6)).astype(np.float32)[:, None]]


def feat_rms_zcr_mfcc_offset(x):
    """Seed 5: ZCR, RMS, MFCC over 2.5 s starting 0.6 s into the file (the seed's librosa.load offset)."""
    y = np.zeros(int(2.5 * SR), np.float32)
    part = x[int(0.6 * SR): int(3.1 * SR)]
    y[: len(part)] = part
    return [_fit_frames(_rms_zcr_mfcc(y), 79)]


def feat_ours_window(x):
    """Our device model's input, for the same-protocol comparison: the default front end (40 log-mel,
    window-mean normalised) on the speech-centred 2 s window."""
    from ..dataset import default_metadata, window_features

    meta = default_metadata()
    return [window_features(_fixed(x, meta.window_s), meta)[..., None].astype(np.float32)]
