"""Shared fixtures: the real corpora, a real mosquitto broker on a free loopback port, the CLI."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))
SAMPLE = ROOT / "edge" / "samples" / "demo.wav"


@pytest.fixture(autouse=True)
def own_state_directory(tmp_path_factory, monkeypatch):
    """Every test's services keep their state (queue, learnt speech statistics) in a directory of their
    own, never in ~/.local/state/ser-edge where one run's statistics would change the next run's events."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path_factory.mktemp("state")))


def need_data():
    if not (DATA / "ravdess").is_dir():
        pytest.skip(f"corpora not found at {DATA} (set SER_DATA)")
    return DATA


@pytest.fixture
def data_dir():
    return need_data()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """A real mosquitto on loopback; restartable on the same port."""

    def __init__(self, tmp: Path, port: int, extra_conf: str = "", persistent: bool = False):
        """persistent: sessions and queued QoS 1 messages survive a broker restart (on disk in `tmp`)."""
        self.tmp, self.port = tmp, port
        self.conf = tmp / "mosquitto.conf"
        import getpass
        persistence = f"persistence true\npersistence_location {tmp}/" if persistent else "persistence false"
        self.conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}\n"
                             f"user {getpass.getuser()}\n{extra_conf}")
        self.proc = None

    def start(self):
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        # its log goes to a file: a pipe nobody reads fills after ~64 KB of log and then blocks the broker
        self.log = self.tmp / "mosquitto.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start: " + self.log.read_text())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)

    @property
    def url(self):
        return f"mqtt://127.0.0.1:{self.port}"


@pytest.fixture
def mosquitto(tmp_path):
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed (make test installs it: apt-get install mosquitto)")
    m = Mosquitto(tmp_path, free_port()).start()
    yield m
    m.stop()


class Subscriber:
    """A paho subscriber that records (topic, payload, retain) for assertions."""

    def __init__(self, port, topics=("ser/#", "homeassistant/#"), persistent=False):
        import paho.mqtt.client as mqtt

        self.messages = []
        # persistent: a durable session, so the broker keeps QoS 1 messages while this subscriber
        # is disconnected (as a real integration would subscribe)
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{time.time_ns()}",
                             clean_session=not persistent)
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload, m.retain))
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        time.sleep(0.3)

    def stop(self):
        self.c.loop_stop()
        self.c.disconnect()

    def payloads(self, suffix):
        import json

        return [json.loads(p) for t, p, r in self.messages if t.endswith(suffix)]


def ser_edge(*args, timeout=120, env=None, **kw):
    """Run the ser-edge CLI as a user would (a subprocess)."""
    e = dict(os.environ, OPENBLAS_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=e, cwd=ROOT, **kw)


def first_seen_order(items):
    """Items in order of first arrival (at-least-once delivery may repeat some)."""
    seen, out = set(), []
    for i in items:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out
