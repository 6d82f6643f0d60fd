"""The mic and cmd sources against a real sound server: a private PulseAudio with a null sink, into
which a real recording is played; what the "microphone" hears must give the same result as the file."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

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
    r = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--no-mqtt", "--source", f"file:{SAMPLE}",
                        "--speed", "0", "--print-events"], cwd=ROOT, capture_output=True, text=True)
    return windows_of(r.stdout)


def compare(live, ref, lead_s=None):
    """Live audio starts some time before (or, when the sound server delivers nothing while idle,
    after) the recording: the lead is taken from the first event. Then every file event start must
    have a live start within two window hops of it (the hop grid falls differently on live audio);
    returns (matched, same label, n)."""
    got = speech_segments(live)
    want = speech_segments(ref)
    assert got, "the microphone path produced no events"
    lead = got[0][0] - want[0][0]
    matched = same = 0
    for t, label in want:
        near = [g for g in got if abs(g[0] - lead - t) <= 1.05]
        if near:
            matched += 1
            same += any(g[1] == label for g in near)
    return matched, same, len(want)


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
    cmd = "cmd:parecord --device=virt.monitor --raw --rate=16000 --channels=1 --format=s16le"
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
