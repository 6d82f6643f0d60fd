"""The front end: same numbers as python_speech_features, streaming == batch."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import features as F
from edge.audio import read_audio

psf = pytest.importorskip("python_speech_features")


def rel_err(a, b):
    """Maximum error relative to the largest magnitude of the reference (per array)."""
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def recordings(request):
    from conftest import need_data

    d = need_data()
    files = (
        sorted((d / "ravdess" / "Actor_01").glob("*.flac"))[:3] + sorted((d / "tess" / "OAF_angry").glob("*.flac"))[:2]
    )
    return [read_audio(f).astype(np.float64) for f in files]


def test_mfcc_matches_python_speech_features_on_real_recordings(recordings):
    for x in recordings:
        assert rel_err(F.mfcc(x), psf.mfcc(x)) <= 1e-6
        assert (
            rel_err(
                F.mfcc(x, numcep=20, nfilt=40, winfunc=np.hamming, ceplifter=0, appendEnergy=False),
                psf.mfcc(x, numcep=20, nfilt=40, winfunc=np.hamming, ceplifter=0, appendEnergy=False),
            )
            <= 1e-6
        )
        assert rel_err(F.logfbank(x, nfilt=40), psf.logfbank(x, nfilt=40)) <= 1e-6
        f, e = F.fbank(x)
        g, h = psf.fbank(x)
        assert rel_err(f, g) <= 1e-6 and rel_err(e, h) <= 1e-6


@pytest.mark.parametrize("n", [1, 399, 400, 401, 559, 560, 16001, 33333])
def test_mfcc_matches_on_random_signals_of_awkward_lengths(n):
    x = np.random.default_rng(n).standard_normal(n)
    assert rel_err(F.mfcc(x), psf.mfcc(x)) <= 1e-6
    assert (
        rel_err(
            F.logfbank(x, 8000, nfilt=20, highfreq=3000, lowfreq=100),
            psf.logfbank(x, 8000, nfilt=20, highfreq=3000, lowfreq=100),
        )
        <= 1e-6
    )


def test_delta_and_filterbank_match():
    feat = np.random.default_rng(0).standard_normal((57, 13))
    for n in (1, 2, 3):
        assert np.allclose(F.delta(feat, n), psf.delta(feat, n), rtol=1e-12, atol=1e-12)
    assert np.array_equal(F.get_filterbanks(26, 512, 16000), psf.get_filterbanks(26, 512, 16000))


def test_rms_zcr_and_normalise():
    t = np.arange(16000) / 16000
    x = 0.5 * np.sin(2 * np.pi * 1000 * t)
    rms = F.frame_rms(x)
    assert np.allclose(rms[:-3], 0.5 / np.sqrt(2), rtol=1e-2)
    zcr = F.frame_zcr(x)
    assert np.allclose(zcr[:-3], 2000 / 16000 * 400 / 399, rtol=0.05)  # two crossings per period
    n = F.normalise(np.random.default_rng(1).standard_normal((100, 5)) * 3 + 7)
    assert np.allclose(n.mean(0), 0, atol=1e-9) and np.allclose(n.std(0), 1, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 2500), min_size=1, max_size=30),
    kind=st.sampled_from(["mfcc", "logfbank"]),
    seed=st.integers(0, 1000),
)
def test_stream_equals_batch_for_any_chunking(sizes, kind, seed):
    cfg = F.FeatureConfig(kind=kind, nfilt=40 if kind == "logfbank" else 26, winfunc="hamming")
    x = np.random.default_rng(seed).standard_normal(sum(sizes))
    s = F.MfccStream(cfg)
    parts, i = [], 0
    for n in sizes:
        parts.append(s.push(x[i : i + n]))
        i += n
    streamed = np.concatenate(parts + [s.flush()])
    batch = F.features(x, cfg)
    assert streamed.shape == batch.shape
    assert np.allclose(streamed, batch, rtol=1e-9, atol=1e-9)
    assert np.all(np.isfinite(streamed))


def test_stream_emits_only_complete_frames():
    cfg = F.FeatureConfig()
    s = F.MfccStream(cfg)
    assert s.push(np.ones(399)).shape[0] == 0
    assert s.push(np.ones(1)).shape[0] == 1  # 400 samples: exactly one complete frame
    assert s.push(np.ones(159)).shape[0] == 0
    assert s.push(np.ones(1)).shape[0] == 1


@settings(max_examples=30, deadline=None)
@given(x=st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=3000))
def test_front_end_never_returns_nan_or_inf_for_finite_input(x):
    a = np.asarray(x)
    for kind in ("mfcc", "logfbank"):
        assert np.all(np.isfinite(F.features(a, F.FeatureConfig(kind=kind))))


def test_feature_config_json_round_trip_and_validation():
    cfg = F.FeatureConfig(kind="logfbank", nfilt=40, winfunc="hamming", highfreq=7600)
    assert F.FeatureConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(F.FeatureConfigError, match="unknown feature setting"):
        F.FeatureConfig.from_dict({"kind": "mfcc", "bogus": 1})
    with pytest.raises(F.FeatureConfigError, match="winfunc"):
        F.FeatureConfig(winfunc="blackman-harris")
    with pytest.raises(F.FeatureConfigError, match="nfft"):
        F.FeatureConfig(nfft=256)
    assert cfg.frames_for(2.0) == 198 and F.FeatureConfig().frame_len == 400
