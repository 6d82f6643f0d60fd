"""The mic and cmd sources against a real sound server: a private PulseAudio with a null sink, into
which a real recording is played; what the "microphone" hears must give the same result as the file."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SAMPLE

pytestmark = pytest.mark.skipif(not shutil.which("pulseaudio") or not shutil.which("paplay"),
                                reason="pulseaudio not installed (apt-get install pulseaudio pulseaudio-utils)")


@pytest.fixture
def pulse():
    run = tempfile.mkdtemp()
    os.chmod(run, 0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=run, PULSE_SOURCE="virt.monitor")

    def start(rate=44100):
        subprocess.run(["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n",
                        "--load=module-native-protocol-unix",
                        f"--load=module-null-sink sink_name=virt rate={rate}"], env=env, check=True,
                       capture_output=True)
        for _ in range(50):
            if subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0:
                return env
            time.sleep(0.1)
        raise RuntimeError("pulseaudio did not start")

    yield start
    subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True)
    shutil.rmtree(run, ignore_errors=True)


def windows_of(stdout):
    return [json.loads(l) for l in stdout.splitlines() if l.startswith("{")]


def run_live(env, source, seconds, heard, *extra):
    """Run the service on a live source while the recording plays into the null sink; the service
    saves what its pipeline heard to `heard`."""
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--no-mqtt", "--source", source,
                          "--print-events", "--save-audio", str(heard), *extra], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # let the source open
    subprocess.run(["paplay", "--device=virt", str(SAMPLE)], env=env, check=True)
    time.sleep(seconds)
    p.terminate()
    out, err = p.communicate(20)
    return p.returncode, out, err


def speech_segments(events):
    """(start offset, emotion) of each event start."""
    return [(e["offset_s"], e["event_type"]) for e in events if e["type"] == "start"]


def file_events(path):
    """The events of a file through `ser-edge run`, from a fresh state directory: the default model
    adapts to the device's speech and saves what it learnt, so a replay that started from another run's
    statistics would normalise differently from the live run it is compared with."""
    import tempfile

    with tempfile.TemporaryDirectory() as state:
        r = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--no-mqtt", "--source", f"file:{path}",
                            "--speed", "0", "--print-events", "--state-dir", state], cwd=ROOT, capture_output=True,
                           text=True)
    assert r.returncode == 0, r.stderr
    return windows_of(r.stdout)


def where_played(heard_path):
    """(sample of what the service heard at which the recording starts, normalised correlation there).
    The hop grid of a live stream falls wherever the playback happened to start; knowing the exact
    sample lets the file reference start on the same grid. Negative when the sound server dropped the
    recording's first samples (its monitor starts delivering ~0.1 s late after being idle)."""
    from edge.audio import read_wav

    heard, rec = read_wav(heard_path), read_wav(SAMPLE)
    n = 1 << int(np.ceil(np.log2(len(heard) + len(rec))))
    xc = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(rec, n)), n)
    k = int(np.argmax(xc))
    lead = k if k < len(heard) else k - n  # circular index -> signed lag
    a, b = max(0, lead), min(len(heard), lead + len(rec))
    seg, ref = heard[a:b], rec[a - lead : b - lead]
    return lead, float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref) + 1e-12))


def placed(heard_path):
    """(what the service heard, the original recording placed at the same sample in silence as long)."""
    from edge.audio import read_wav

    heard, rec = read_wav(heard_path), read_wav(SAMPLE)
    lead, _ = where_played(heard_path)
    x = np.zeros(len(heard), np.float32)
    a, b = max(0, lead), min(len(heard), lead + len(rec))
    x[a:b] = rec[a - lead : b - lead]
    return heard, x


def reference_at(heard_path, tmp):
    """The file path on the recording placed where the live stream heard it: the same window grid."""
    from edge.audio import write_wav

    _, x = placed(heard_path)
    write_wav(Path(tmp) / "reference.wav", x)
    return file_events(Path(tmp) / "reference.wav")


def compare(live, ref):
    """Every reference event start must have a live start at the same offset (the grids coincide, so
    within one frame) with the same label; returns (matched, same label, n)."""
    got, want = speech_segments(live), speech_segments(ref)
    assert got, "the microphone path produced no events"
    matched = same = 0
    for t, label in want:
        near = [g for g in got if abs(g[0] - t) <= 0.011]
        matched += bool(near)
        same += any(g[1] == label for g in near)
    return matched, same, len(want)


def check_against_file(out, heard, tmp):
    """What the microphone path reported must equal the file path on exactly the samples the pipeline
    heard (the pipeline does not depend on how audio arrives), and those samples must be the recording,
    complete: correlation >= 0.98 and every 10 ms frame of its speech within 10 dB of the original (a
    lost or repeated chunk is far more; the resamplers' roll-off near 8 kHz takes up to 4 dB from a
    fricative).

    Not asserted: that the *original* recording, placed on the same window grid, gives the same events.
    It does in most runs, but any resampling on the way (the sound server's to 44.1 kHz and back, or the
    service's own from 44.1/48 kHz) changes a borderline label of today's model now and then (measured
    before this test was rewritten: 2 of 8 idle device-loss runs; after: 1 of 2 runs with the sink
    reopened at 16 kHz): the model's robustness (issue 14), not the audio path's. Printed for the log."""
    live = windows_of(out)
    lead, corr = where_played(heard)
    assert corr >= 0.98, f"the recording arrived altered: correlation {corr:.4f} at sample {lead}"
    got, want = placed(heard)
    n = len(got) // 160
    e_got, e_want = (np.sqrt(np.mean(v[: n * 160].reshape(n, 160) ** 2, axis=1)) + 1e-9 for v in (got, want))
    speech = e_want > e_want.max() * 10 ** (-30 / 20)
    off = np.abs(20 * np.log10(e_got[speech] / e_want[speech])) > 10
    assert not off.any(), f"{off.sum()} of {speech.sum()} speech frames differ by > 10 dB (lost audio?)"
    same_samples = file_events(heard)
    assert speech_segments(live) == speech_segments(same_samples), (speech_segments(live),
                                                                     speech_segments(same_samples))
    # not a degenerate pass (both paths silent): the demo recording gives 2-5 event starts depending on
    # where the window grid falls (`tools/alignment_sweep.py --rate 48000`: 2 at 6 % of 10 ms alignments,
    # never fewer); a floor of 3 failed 2 of 20 flake-check runs on exactly those alignments
    assert len(speech_segments(live)) >= 2, speech_segments(live)
    matched, same, n = compare(live, reference_at(heard, tmp))
    print(f"original recording on the same grid: {matched} of {n} event starts at the same offset, "
          f"{same} with the same label (correlation {corr:.4f})")


def test_mic_pulse_gives_the_file_result(pulse, tmp_path):
    env = pulse()
    rc, out, err = run_live(env, "mic:pulse", 2.0, tmp_path / "heard.wav")
    assert rc == 0, err
    assert "microphone open at 16000 Hz" in err
    check_against_file(out, tmp_path / "heard.wav", tmp_path)


def test_cmd_parecord_gives_the_file_result(pulse, tmp_path):
    env = pulse()
    # --latency-msec: parecord's default buffering holds back ~2 s, which cut off the last segment
    cmd = "cmd:parecord --device=virt.monitor --raw --rate=16000 --channels=1 --format=s16le --latency-msec=100"
    rc, out, err = run_live(env, cmd, 2.0, tmp_path / "heard.wav")
    assert rc == 0, err
    check_against_file(out, tmp_path / "heard.wav", tmp_path)


def test_48k_only_device_is_opened_at_its_rate_and_resampled(pulse, tmp_path):
    env = pulse(rate=48000)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[audio]\nmic_rate = 48000\n")
    rc, out, err = run_live(env, "mic:pulse", 2.0, tmp_path / "heard.wav", "--config", str(cfg))
    assert rc == 0, err
    assert "microphone open at 48000 Hz, 2 channel(s), resampled to 16 kHz" in err
    check_against_file(out, tmp_path / "heard.wav", tmp_path)


def test_devices_lists_pulse_with_rates(pulse):
    env = pulse()
    r = subprocess.run([sys.executable, "-m", "edge.cli", "devices", "--json"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    devices = json.loads(r.stdout)
    pulse_dev = [d for d in devices if d["name"] == "pulse"]
    assert pulse_dev and 16000 in pulse_dev[0]["rates"] and pulse_dev[0]["channels"] >= 1
    assert "ALSA lib" not in r.stderr


def null_sink_module(env):
    out = subprocess.run(["pactl", "list", "short", "modules"], env=env, capture_output=True, text=True).stdout
    return next(line.split()[0] for line in out.splitlines() if "module-null-sink" in line)


def latest_stats(sub, timeout=15.0, where=lambda s: True):
    """Wait for a stats message that satisfies `where`; return it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        matching = [s for s in sub.payloads("/stats") if where(s)]
        if matching:
            return matching[-1]
        time.sleep(0.2)
    raise AssertionError(f"no stats message matched; last: {(sub.payloads('/stats') or [None])[-1]}")


def play_and_wait_until_heard(env, sub, recording_s=25.5):
    """Play the recording, then wait until the service has processed that much audio more (under
    load it lags the sound server; a fixed sleep cut off the last segment)."""
    a0 = latest_stats(sub)["audio_s"]
    subprocess.run(["paplay", "--device=virt", str(SAMPLE)], env=env, check=True)
    latest_stats(sub, timeout=60, where=lambda s: s["audio_s"] >= a0 + recording_s + 2.5)


def start_service(env, mosquitto, tmp_path, *extra, source="mic:pulse"):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "run",
            "--source",
            source,
            *extra,
            "--broker",
            mosquitto.url,
            "--save-audio",
            str(tmp_path / "heard.wav"),
            "--device-id",
            "mic1",
            "--state-dir",
            str(tmp_path / "state"),
            "--stats-interval",
            "1",
            "--print-events",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_device_loss_is_logged_once_counted_and_recovered(pulse, mosquitto, tmp_path):
    """Unload the null sink mid-stream (the 'microphone' disappears), load it again: the source logs
    the loss once, reopens with backoff, the stats show the outage, and the service carries on and
    hears the recording played afterwards."""
    from conftest import Subscriber

    env = pulse()
    sub = Subscriber(mosquitto.port)
    p = start_service(env, mosquitto, tmp_path)
    try:
        latest_stats(sub, where=lambda s: s["audio_s"] > 1)  # capturing
        subprocess.run(["pactl", "unload-module", null_sink_module(env)], env=env, check=True)
        lost = latest_stats(sub, where=lambda s: s["source_lost"])
        assert lost["source_outages"] == 1
        time.sleep(4)  # several reopen attempts fail while the device is gone
        subprocess.run(
            ["pactl", "load-module", "module-null-sink", "sink_name=virt", "rate=44100"],
            env=env,
            check=True,
            capture_output=True,
        )
        back = latest_stats(sub, timeout=40, where=lambda s: s["source_restarts"] == 1 and not s["source_lost"])
        assert back["source_outages"] == 1 and back["source_gap_s"] >= 4
        assert p.poll() is None, "the service kept running"
        # "back" is the first read after the reopen: play only once audio has been flowing for 3 s more
        latest_stats(sub, timeout=30, where=lambda s: s["audio_s"] >= back["audio_s"] + 3)
        play_and_wait_until_heard(env, sub)
    finally:
        p.terminate()
        out, err = p.communicate(30)
        sub.stop()
    assert p.returncode == 0, err
    assert err.count("microphone lost") == 1, err
    assert err.count("microphone back after") == 1, err
    assert "ALSA lib" not in err, "PortAudio's probing noise is hidden while reopening"
    # the reloaded sink is opened at 44.1 kHz and resampled by the service (see check_against_file)
    check_against_file(out, tmp_path / "heard.wav", tmp_path)


def test_overflow_under_load_is_counted_and_capture_goes_on(pulse, mosquitto, tmp_path):
    """Two busy loops hog both cores and the service is frozen for 25 s (SIGSTOP: what a Pi swapping or
    stuck on its SD card does to a process). PulseAudio buffers about 21 s of 48 kHz stereo for a stalled
    reader, then drops audio without telling anyone; the source sees the stream fall behind the wall
    clock and counts an overflow, and capture carries on: the recording played afterwards, still under
    load, gives the file's events."""
    from conftest import Subscriber

    env = pulse(rate=48000)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[audio]\nmic_rate = 48000\n")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    sub = Subscriber(mosquitto.port)
    p = start_service(env, mosquitto, tmp_path, "--config", str(cfg))
    try:
        latest_stats(sub, where=lambda s: s["audio_s"] > 1)
        p.send_signal(signal.SIGSTOP)
        time.sleep(25)
        p.send_signal(signal.SIGCONT)
        over = latest_stats(sub, timeout=30, where=lambda s: s["overflows"] >= 1)
        assert over["source_outages"] == 0, "an overflow is not a lost device"
        play_and_wait_until_heard(env, sub)
    finally:
        for h in hogs:
            h.kill()
        p.terminate()
        out, err = p.communicate(30)
        sub.stop()
    assert p.returncode == 0, err
    check_against_file(out, tmp_path / "heard.wav", tmp_path)


def test_short_stall_loses_nothing_and_counts_no_overflow(pulse, mosquitto, tmp_path):
    """The other side of the same coin: a 3 s freeze is absorbed by the sound server's buffer, so no
    overflow may be reported (a counter that fires on every hiccup would be noise)."""
    from conftest import Subscriber

    env = pulse()
    sub = Subscriber(mosquitto.port)
    p = start_service(env, mosquitto, tmp_path)
    try:
        latest_stats(sub, where=lambda s: s["audio_s"] > 1)
        p.send_signal(signal.SIGSTOP)
        time.sleep(3)
        p.send_signal(signal.SIGCONT)
        t = time.monotonic()
        s = latest_stats(sub, where=lambda s: s["uptime_s"] > 0 and s["audio_s"] > 0 and time.monotonic() - t > 3)
    finally:
        p.terminate()
        p.communicate(30)
        sub.stop()
    assert s["overflows"] == 0 and s["dropped_chunks"] == 0
    assert s["uptime_s"] - s["audio_s"] < 2.5, "the 3 s of audio buffered by the server were all read"
