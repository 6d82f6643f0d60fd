"""Bad input, one clear line each: exit code 2, the culprit named, no traceback. Odd but valid audio
is analysed."""

import numpy as np
import pytest
from conftest import SAMPLE, ser_edge

sf = pytest.importorskip("soundfile")


def one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, (n, err)


BAD_FILES = {
    "empty.wav": b"",
    "text.wav": b"just some text\nnot audio\n",
    "random.wav": bytes(np.random.default_rng(0).integers(128, 256, 4096, dtype=np.uint8)),
    "riff-no-data.wav": b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00\x00\x7d\x00\x00\x02\x00\x10\x00",
    "adpcm.wav": b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x02\x00\x01\x00\x80\x3e\x00\x00\x00\x7d\x00\x00\x02\x00\x04\x00data\x04\x00\x00\x00\x00\x00\x00\x00",
    "12bit.wav": b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00\x00\x7d\x00\x00\x02\x00\x0c\x00data\x04\x00\x00\x00\x00\x00\x00\x00",
    "zero-channels.wav": b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x00\x00\x80\x3e\x00\x00\x00\x7d\x00\x00\x02\x00\x10\x00data\x04\x00\x00\x00\x00\x00\x00\x00",
    "flac.wav": b"fLaC\x00\x00\x00\x22" + bytes(40),
    "mp3.wav": b"ID3\x03\x00\x00\x00" + bytes(40),
    "ogg.wav": b"OggS" + bytes(40),
    "aiff.wav": b"FORM\x00\x00\x00\x20AIFFCOMM" + bytes(40),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_audio_files_are_refused(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(BAD_FILES[name])
    one_line_error(ser_edge("analyze", str(p)), name)


def test_missing_file_and_directory(tmp_path):
    one_line_error(ser_edge("analyze", str(tmp_path / "nope.wav")), "nope.wav", "cannot open")
    one_line_error(ser_edge("analyze", str(tmp_path)), str(tmp_path))


def test_real_aiff_fixture_and_flac_corpus_file(data_dir):
    one_line_error(ser_edge("analyze", str(data_dir / "fixtures/tess/YAF_angry/YAF_germ_angry.wav")), "AIFF")
    flac = next((data_dir / "ravdess/Actor_01").glob("*.flac"))
    one_line_error(ser_edge("analyze", str(flac)), flac.name, "FLAC")


def test_one_bad_file_among_good_ones_does_not_stop_the_rest(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    r = ser_edge("analyze", "--clip", str(SAMPLE), str(bad), str(SAMPLE))
    assert r.returncode == 2 and len(r.stdout.strip().splitlines()) == 2 and "bad.wav" in r.stderr


def _speechy(rate, seconds=3.0):
    x, r = sf.read(str(SAMPLE), dtype="float64")
    from edge.audio import resample

    return resample(x[16000 : 16000 + int(seconds * 16000)], 16000, rate).astype(np.float64)


ODD_BUT_VALID = {
    "u8.wav": dict(subtype="PCM_U8"),
    "s24.wav": dict(subtype="PCM_24"),
    "s32.wav": dict(subtype="PCM_32"),
    "f32.wav": dict(subtype="FLOAT"),
    "f64.wav": dict(subtype="DOUBLE"),
    "8k.wav": dict(rate=8000),
    "96k.wav": dict(rate=96000),
    "44k1.wav": dict(rate=44100),
    "six-channels.wav": dict(channels=6),
    "stereo.wav": dict(channels=2),
    "dc-offset.wav": dict(dc=0.3),
    "clipped.wav": dict(gain=20.0),
    "tenth-second.wav": dict(seconds=0.1),
    "silence.wav": dict(silence=True),
}


@pytest.mark.parametrize("name", sorted(ODD_BUT_VALID))
def test_odd_but_valid_audio_is_analysed(tmp_path, name):
    o = ODD_BUT_VALID[name]
    rate = o.get("rate", 16000)
    x = _speechy(rate, o.get("seconds", 3.0)) * o.get("gain", 1.0) + o.get("dc", 0.0)
    if o.get("silence"):
        x = np.zeros_like(x)
    x = np.clip(x, -1, 1)
    if o.get("channels", 1) > 1:
        x = np.tile(x[:, None], (1, o["channels"]))
    p = tmp_path / name
    sf.write(str(p), x, rate, subtype=o.get("subtype", "PCM_16"), format="WAV")
    r = ser_edge("analyze", "--clip", str(p))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def test_nan_and_infinite_float_samples(tmp_path):
    x = _speechy(16000).astype(np.float32)
    x[::100] = np.nan
    x[1::100] = np.inf
    p = tmp_path / "bad-values.wav"
    sf.write(str(p), x, 16000, subtype="FLOAT", format="WAV")
    r = ser_edge("analyze", "--clip", str(p))
    assert r.returncode == 0 and "NaN" not in r.stdout and "Infinity" not in r.stdout


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--source", "usb"], "expected mic:NAME, cmd:COMMAND, file:PATH or stdin"),
        (["--broker", "http://host"], "expected mqtt://[user@]host[:port]"),
        (["--broker", "mqtt://u:hunter2@host"], "a password in the URL is refused"),
        (["--broker", "htp://u:hunter2@host:1883"], "got 'htp://u:***@host:1883'"),
        (["--speed", "-1"], "[audio] speed: expected a number in 0..100000"),
        (["--model", "/nonexistent/model.tflite"], "/nonexistent/model.tflite: cannot read model"),
        (["--source", "file:/nonexistent.wav"], "/nonexistent.wav: cannot open"),
    ],
)
def test_run_refuses_bad_flags(tmp_path, flags, needle):
    r = ser_edge("run", "--no-mqtt", "--state-dir", str(tmp_path), "--source", f"file:{SAMPLE}", *flags, timeout=60)
    one_line_error(r, needle)
    assert "hunter2" not in r.stderr, "a password is never echoed"


def test_run_refuses_bad_config_file(tmp_path):
    c = tmp_path / "c.toml"
    c.write_text("[smoothing]\nthreshold = 2\n")
    one_line_error(
        ser_edge("run", "--config", str(c), "--no-mqtt"),
        "c.toml (line 2): [smoothing] threshold",
        "expected a number in 0..1, got 2",
    )


def test_unknown_mic_lists_what_exists(tmp_path):
    pytest.importorskip("pyaudio")
    r = ser_edge("run", "--no-mqtt", "--source", "mic:no-such-microphone-xyz", timeout=60)
    one_line_error(r, "no input device matches 'no-such-microphone-xyz'; available:")


def test_one_hour_recording_is_streamed_not_loaded(tmp_path):
    """A 1 h WAV (115 MB of int16; 230 MB as float32) is analysed with a peak RSS far below its size."""
    import wave

    speech = (sf.read(str(SAMPLE), dtype="int16")[0]).tobytes()
    p = tmp_path / "one-hour.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        for _ in range(int(3600 * 16000 * 2 / len(speech)) + 1):
            w.writeframes(speech)
    assert p.stat().st_size > 115_000_000
    code = (
        "import sys, edge.cli as c\nrc = c.main(sys.argv[1:])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print('peak_kb', hwm, file=sys.stderr)\nsys.exit(rc)"
    )
    import subprocess
    import sys

    from conftest import ROOT

    r = subprocess.run(
        [sys.executable, "-c", code, "analyze", "--clip", str(p)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr
    peak_mb = int(r.stderr.split("peak_kb")[1].split()[0]) / 1024
    assert peak_mb < 150, f"peak RSS {peak_mb:.0f} MB: the file was loaded whole"
    import json

    assert json.loads(r.stdout)["windows"] > 3000, "the whole hour was analysed (speech windows only)"


def test_float_model_where_int8_is_expected(tmp_path):
    """The service refuses a float model (several times slower on a Pi) unless told otherwise."""
    from conftest import ROOT

    floats = sorted((ROOT / "tests" / "fixtures").glob("*float*.tflite"))
    if not floats:
        pytest.skip("no float model fixture")
    r = ser_edge(
        "run",
        "--no-mqtt",
        "--model",
        str(floats[0]),
        "--source",
        f"file:{SAMPLE}",
        "--state-dir",
        str(tmp_path),
        timeout=60,
    )
    one_line_error(r, floats[0].name, "float model where a full-int8 model is expected")
    c = tmp_path / "c.toml"
    c.write_text("[model]\nrequire_int8 = false\n")
    r = ser_edge(
        "run",
        "--no-mqtt",
        "--config",
        str(c),
        "--model",
        str(floats[0]),
        "--source",
        f"file:{SAMPLE}",
        "--speed",
        "0",
        "--state-dir",
        str(tmp_path),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
