"""Shared fixtures: the real corpora, a real mosquitto broker on a free loopback port, the CLI."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.broker import Mosquitto, free_port  # noqa: F401  (the tests import both from here)

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
