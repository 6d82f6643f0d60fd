"""The Home Assistant dashboard, automations and Node-RED flow parse, and use exactly the entity ids
and topics that our discovery and contract publish; `analyze --plot` draws a picture."""
import json
import re

import pytest
from conftest import ROOT, SAMPLE, ser_edge

from edge.mqtt import Topics, discovery_payload

yaml = pytest.importorskip("yaml")
LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def published_entities(device="livingroom"):
    d = discovery_payload(Topics("ser", device), device, "Emotion", LABELS, "default.tflite")
    return {c["default_entity_id"] for c in d["cmps"].values()}


def referenced(text):
    return set(re.findall(r"\b(?:sensor|binary_sensor|event)\.[a-z0-9_]+", text))


def test_dashboard_parses_and_uses_published_entities():
    text = (ROOT / "docs/homeassistant/dashboard.yaml").read_text()
    doc = yaml.safe_load(text)
    assert doc["views"][0]["cards"]
    refs = referenced(text)
    assert refs and refs <= published_entities()
    assert published_entities() <= refs, "every entity the discovery creates is on the dashboard"


def test_automations_parse_and_use_published_entities_and_labels():
    text = (ROOT / "docs/homeassistant/automations.yaml").read_text()
    autos = yaml.safe_load(text)
    assert len(autos) >= 3 and all("triggers" in a and "actions" in a for a in autos)
    assert referenced(text) <= published_entities()
    for a in autos:
        for t in a["triggers"]:
            for state in (t.get("to") if isinstance(t.get("to"), list) else [t.get("to")]):
                assert state is None or state in LABELS + ["unavailable", "none"]


def test_node_red_flow_subscribes_to_contract_topics():
    flow = json.loads((ROOT / "docs/node-red-flow.json").read_text())
    topics = {n["topic"] for n in flow if n.get("type") == "mqtt in"}
    t = Topics("ser", "+")
    assert topics == {t.event, t.state}
    ids = {n["id"] for n in flow}
    for n in flow:
        for out in n.get("wires", []):
            assert set(out) <= ids


def test_analyze_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "a.png"
    r = ser_edge("analyze", "--clip", "--plot", str(out), str(SAMPLE))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20000
