"""The fleet ACL (firmware_config/mosquitto-fleet.acl) on a real mosquitto: every device can do all it
needs under its own topics, and nothing under another device's (bench/fleet.py measures the scale)."""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import fleet  # noqa: E402

from edge.config import defaults  # noqa: E402
from edge.mqtt import Publisher  # noqa: E402
from edge.outbox import Outbox  # noqa: E402


@pytest.fixture
def fleet_broker(tmp_path):
    users = {"dev0000": "pw-a", "dev0001": "pw-b", "homeassistant": "ha-secret"}
    broker = fleet.start_broker(tmp_path, users)
    yield broker, users
    broker.stop()


def device(tmp_path, port, users, d) -> Publisher:
    (tmp_path / f"{d}.pw").write_text(users[d])
    cfg = defaults().with_changes({"mqtt": dict(username=d, password_file=str(tmp_path / f"{d}.pw"),
                                                allow_plaintext_password=True)})
    p = Publisher(cfg, d, f"Emotion {d}", ["neutral", "angry"], "default.tflite", Outbox(tmp_path / d),
                  f"mqtt://127.0.0.1:{port}")
    p.start()
    assert p.connected.wait(10), f"{d} could not connect with its own user name and password"
    return p


def test_devices_publish_everything_under_their_own_topics_and_nothing_under_anothers(tmp_path, fleet_broker):
    broker, users = fleet_broker
    consumer = fleet.Consumer(broker.port, users["homeassistant"])
    seen = {}
    got = threading.Event()
    ha = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-discovery")
    ha.username_pw_set("homeassistant", users["homeassistant"])
    ha.on_message = lambda c, u, m: (seen.__setitem__(m.topic, m.payload), got.set())
    ha.on_connect = lambda c, u, f, rc, p: c.subscribe([("homeassistant/device/+/config", 1),
                                                         ("ser/+/availability", 1)])
    ha.connect("127.0.0.1", broker.port)
    ha.loop_start()
    names = ("dev0000", "dev0001")
    devices = [device(tmp_path, broker.port, users, d) for d in names]
    try:
        for d, p in zip(names, devices):
            p.publish_state({"emotion": "none", "speech": False})
            p.publish_event({"event_type": "angry", "type": "start", "id": f"{d}-e1", "score": 0.7,
                             "offset_s": 1.0})
        deadline = time.time() + 10
        want = {("dev0000", "dev0000-e1"), ("dev0001", "dev0001-e1")}
        while time.time() < deadline and not want <= {k[:2] for k in consumer.received}:
            time.sleep(0.1)
        assert want <= {k[:2] for k in consumer.received}, "an allowed event did not reach the consumer"
        for d in names:  # discovery and availability pass the ACL too
            assert json.loads(seen[f"homeassistant/device/{d}/config"])["dev"]["ids"]
            assert seen[f"ser/{d}/availability"] == b"online"

        acl = fleet.acl_check(broker.port, users, consumer)
        assert acl["puback"] == "Not authorized", acl
        assert not acl["forged_event_reached_consumer"], acl
        assert acl["wrong_password_connack"] in ("Not authorized", "Bad user name or password"), acl
        assert acl["refused"]
    finally:
        for p in devices:
            p.stop(timeout=2.0)
        ha.loop_stop()
        consumer.stop()
