"""WAV reading with the standard library, resampling in numpy, clear errors for everything else."""
import struct

import numpy as np
import pytest

from edge.audio import AudioError, Resampler, iter_wav, read_audio, read_wav, resample, wav_info

sf = pytest.importorskip("soundfile")


def write(path, x, rate=16000, subtype="PCM_16", channels=1):
    sf.write(str(path), x if channels == 1 else np.tile(x[:, None], (1, channels)), rate, subtype=subtype,
             format="WAV")
    return path


@pytest.mark.parametrize("subtype,tol", [("PCM_U8", 1 / 100), ("PCM_16", 1e-4), ("PCM_24", 1e-6),
                                         ("PCM_32", 1e-7), ("FLOAT", 1e-7), ("DOUBLE", 1e-7)])
def test_reads_every_pcm_width_and_float(tmp_path, subtype, tol):
    x = (0.5 * np.sin(np.arange(1600) / 7)).astype(np.float64)
    p = write(tmp_path / f"{subtype}.wav", x, subtype=subtype)
    y = read_wav(p)
    ref, _ = sf.read(str(p), dtype="float64")
    assert y.dtype == np.float32 and len(y) == len(x)
    assert np.max(np.abs(y - ref)) <= tol


@pytest.mark.parametrize("channels", [2, 6])
def test_channels_are_averaged(tmp_path, channels):
    x = (0.3 * np.sin(np.arange(1600) / 5))
    y = read_wav(write(tmp_path / "c.wav", x, channels=channels))
    assert np.allclose(y, x, atol=1e-4)


def test_original_corpus_fixtures_read_like_soundfile(data_dir):
    for f in sorted((data_dir / "fixtures").rglob("*.wav")):
        if f.name == "YAF_germ_angry.wav":
            continue
        info = wav_info(f)
        ours = read_wav(f)
        ref, rate = sf.read(str(f), dtype="float32", always_2d=True)
        assert info.samplerate == rate
        assert abs(len(ours) - round(len(ref) * 16000 / rate)) <= 1
        # the same recording reaches 16 kHz through our resampler and through soundfile+ours
        assert np.allclose(ours, resample(ref.mean(axis=1), rate), atol=1e-4)


def test_aiff_named_wav_is_refused_with_what_it_is(data_dir):
    f = data_dir / "fixtures" / "tess" / "YAF_angry" / "YAF_germ_angry.wav"
    with pytest.raises(AudioError, match=r"YAF_germ_angry.wav: is an AIF[FC] file"):
        read_wav(f)


@pytest.mark.parametrize(
    "content,what",
    [
        (b"", "empty"),
        (b"hello, world\n", "text"),
        (b"fLaC\x00\x00\x00\x22", "FLAC"),
        (bytes(range(256)) * 4, "not a RIFF"),
    ],
)
def test_non_wav_files_are_refused(tmp_path, content, what):
    p = tmp_path / "x.wav"
    p.write_bytes(content)
    with pytest.raises(AudioError, match=what):
        read_wav(p)


def test_truncated_wav_reads_what_is_there(tmp_path):
    p = write(tmp_path / "t.wav", np.zeros(16000))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2 + 1])
    assert 7000 < len(read_wav(p)) < 8100
    p.write_bytes(data[:30])
    with pytest.raises(AudioError, match="truncated"):
        read_wav(p)


def test_nan_and_inf_samples_become_finite(tmp_path):
    x = np.zeros(1000, np.float32)
    x[10], x[20], x[30] = np.nan, np.inf, -np.inf
    y = read_wav(write(tmp_path / "n.wav", x, subtype="FLOAT"))
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1


def test_long_files_are_streamed_in_chunks(tmp_path):
    p = write(tmp_path / "l.wav", np.zeros(48000 * 5), rate=48000)
    chunks = list(iter_wav(p, chunk_seconds=1.0))
    assert len(chunks) >= 5 and all(len(c) <= 16001 for c in chunks)
    assert sum(len(c) for c in chunks) == 80000


def tone_db(x, freq, rate=16000):
    n = len(x)
    t = np.arange(n) / rate
    c = np.abs(np.dot(x, np.exp(-2j * np.pi * freq * t))) * 2 / n
    return 20 * np.log10(c + 1e-12)


@pytest.mark.parametrize("rate", [22050, 24414, 44100, 48000, 96000, 8000])
def test_resampler_passband_and_aliasing(rate):
    """1 kHz passes within 0.05 dB; a tone above the new Nyquist (aliasing to < 8 kHz) is >= 70 dB down."""
    t = np.arange(rate) / rate
    y = resample(np.sin(2 * np.pi * 1000 * t), rate)
    assert len(y) == 16000
    assert abs(tone_db(y[2000:-2000], 1000)) < 0.05
    if rate > 20000:
        f = 11000  # aliases to 5 kHz at 16 kHz
        y = resample(np.sin(2 * np.pi * f * t), rate)
        alias = 16000 - f
        assert tone_db(y[2000:-2000], alias) < -70


def test_streaming_resampler_equals_whole_signal():
    x = np.random.default_rng(0).standard_normal(44100).astype(np.float32)
    r = Resampler(44100)
    parts = [r.process(c) for c in np.array_split(x, 17)] + [r.flush()]
    assert np.allclose(np.concatenate(parts), resample(x, 44100), atol=1e-6)


def test_flac_reads_through_soundfile_for_the_converter(data_dir):
    f = next((data_dir / "ravdess" / "Actor_01").glob("*.flac"))
    x = read_audio(f)
    assert x.dtype == np.float32 and 2 * 16000 < len(x) < 6 * 16000


# -- fuzzing: whatever the bytes, the reader answers with audio or an AudioError, nothing else --------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st


def _header(tag, channels, rate, bits, data_size, fmt_size=16):
    fmt = struct.pack(
        "<HHIIHH", tag, channels, rate, rate * channels * bits // 8 & 0xFFFFFFFF, channels * bits // 8 & 0xFFFF, bits
    )
    fmt = fmt[:fmt_size] + bytes(max(0, fmt_size - 16))
    return (
        b"RIFF"
        + struct.pack("<I", (36 + data_size) & 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", fmt_size)
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
    )


wav_like = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda h, body: h + body,
        st.builds(
            _header,
            st.sampled_from([1, 3, 2, 0xFFFE, 0, 85]),
            st.integers(0, 70),
            st.one_of(st.sampled_from([8000, 16000, 44100, 48000]), st.integers(0, 2**32 - 1)),
            st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64, 65535]),
            st.one_of(st.integers(0, 4096), st.just(0xFFFFFFFF)),
            st.sampled_from([0, 14, 16, 18, 40]),
        ),
        st.binary(max_size=4096),
    ),
    st.builds(
        lambda b, i, v: b[:i] + bytes([v]) + b[i + 1 :],  # one byte flipped in a valid file
        st.just(_header(1, 1, 16000, 16, 2000) + bytes(2000)),
        st.integers(0, 2043),
        st.integers(0, 255),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=wav_like)
def test_wav_reader_raises_only_audio_error(tmp_path, data):
    p = tmp_path / "fuzz.wav"
    p.write_bytes(data)
    for reader in (wav_info, read_wav, lambda q: list(iter_wav(q)), read_audio):
        try:
            out = reader(p)
        except AudioError:
            continue
        if isinstance(out, np.ndarray):
            assert out.dtype == np.float32 and np.all(np.isfinite(out))


def test_wav_writer_keeps_every_sample_and_is_readable_before_close(tmp_path):
    """`ser-edge run --save-audio`: the file holds exactly the float samples given, chunk by chunk, and
    its header is valid after every chunk (a crash leaves a readable file)."""
    from edge.audio import WavWriter

    rng = np.random.default_rng(1)
    chunks = [rng.uniform(-1, 1, n).astype(np.float32) for n in (1600, 1, 777, 16000)]
    w = WavWriter(tmp_path / "heard.wav")
    for k, c in enumerate(chunks):
        w.write(c)
        assert np.array_equal(read_wav(tmp_path / "heard.wav"), np.concatenate(chunks[: k + 1]))
    w.close()
    assert wav_info(tmp_path / "heard.wav").is_float
