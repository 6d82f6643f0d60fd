"""The service in-process, with a fake publisher and a real file source: what it publishes, how a
SIGHUP reload rebuilds what changed and refuses what cannot change live, and that a reload neither
loses nor rewinds the stream. The same behaviour through real processes and a real broker is in
test_service_mqtt.py; these run in a second and show where each piece lives."""
import dataclasses
import json
import logging

import jsonschema
import numpy as np
import pytest
from conftest import ROOT, SAMPLE

from edge.audio import read_wav
from edge.config import ConfigError, defaults, load
from edge.mqtt import state_payload
from edge.pipeline import Pipeline
from edge.service import RunOptions, Service, load_model, make_pipeline
from edge.sources import FileSource

SCHEMAS = {n: json.loads((ROOT / "edge" / "schemas" / f"{n}.json").read_text())
           for n in ("event", "state", "stats")}


class FakePublisher:
    """What the service hands to MQTT, kept in memory."""

    def __init__(self):
        self.events, self.states, self.stats = [], [], []
        self.pending = 0

    def publish_event(self, payload):
        self.events.append(payload)

    def publish_state(self, payload):
        self.states.append(payload)

    def publish_stats(self, payload):
        self.stats.append(payload)

    def flush(self, timeout):
        return True

    def stop(self, timeout=5.0):
        pass


def service(tmp_path, text="", **kw):
    path = tmp_path / "ser-edge.toml"
    path.write_text(text)
    overrides = {"state": {"dir": str(tmp_path / "state")}}
    cfg = load(path).with_changes(overrides)
    source = FileSource(str(SAMPLE), speed=0, chunk_ms=100, queue_chunks=10_000)
    pub = FakePublisher()
    svc = Service(cfg, RunOptions(config_path=str(path), overrides=overrides), source=source, publisher=pub, **kw)
    return svc, pub, path


def test_service_publishes_what_the_pipeline_decides(tmp_path):
    svc, pub, _ = service(tmp_path)
    svc.start()
    assert svc.run() == 0
    svc.shutdown()
    # the same events as the pipeline alone on the same audio
    pipe = make_pipeline(load_model(defaults()), defaults(), wall_start=0.0)
    x = read_wav(SAMPLE)
    expected = []
    for i in range(0, len(x), 1600):
        expected += [(e.type, e.emotion, round(e.offset_s, 3)) for e in pipe.push(x[i:i + 1600]).events]
    expected += [(e.type, e.emotion, round(e.offset_s, 3)) for e in pipe.finish().events]
    assert expected and [(e["type"], e["event_type"], e["offset_s"]) for e in pub.events] == expected
    for e in pub.events:
        jsonschema.validate(e, SCHEMAS["event"])
    for s in pub.states:
        jsonschema.validate(s, SCHEMAS["state"])
    assert pub.states[0]["emotion"] == "none" and pub.states[-1]["emotion"] == "none"
    assert len(pub.stats) == 1, "one stats message at shutdown"
    jsonschema.validate(pub.stats[0], SCHEMAS["stats"])
    assert pub.stats[0]["audio_s"] == pytest.approx(len(x) / 16000, abs=0.2)


def test_reload_rebuilds_live_settings_and_refuses_the_rest_in_one_line(tmp_path, caplog):
    svc, pub, path = service(tmp_path, "[device]\nid = 'kitchen'\n[smoothing]\nthreshold = 0.35\n")
    svc.start()
    old_pipeline, old_source = svc.pipeline, svc.source
    path.write_text("[device]\nid = 'hall'\n[mqtt]\nbroker = 'mqtt://elsewhere:1883'\nstats_interval_s = 7\n"
                    "[smoothing]\nthreshold = 0.5\n")
    with caplog.at_level(logging.INFO, logger="ser_edge"):
        svc.reload()
    refused = [r.getMessage() for r in caplog.records if "cannot change while running" in r.getMessage()]
    assert len(refused) == 1 and "device.id" in refused[0] and "mqtt.broker" in refused[0]
    assert "smoothing.threshold" not in refused[0]
    assert svc.cfg.device.id == "kitchen" and svc.cfg.mqtt.broker == ""  # kept: they name the connection
    assert svc.cfg.mqtt.stats_interval_s == 7 and svc.cfg.smoothing.threshold == 0.5  # applied
    assert svc.pipeline is not old_pipeline and svc.pipeline.tracker.s.threshold == 0.5
    assert svc.source is old_source, "audio did not change: the source goes on"
    svc.stop_requested.set()
    svc.shutdown()


def test_reload_of_a_bad_config_keeps_everything_running(tmp_path, caplog):
    svc, pub, path = service(tmp_path)
    svc.start()
    before = (svc.cfg, svc.pipeline, svc.clf)
    path.write_text("[gate]\nmin_dbfs = 'loud'\n")
    svc.reload()
    assert (svc.cfg, svc.pipeline, svc.clf) == before
    assert "reload refused" in caplog.text and "min_dbfs" in caplog.text
    svc.shutdown()


def test_a_reloaded_pipeline_goes_on_where_the_old_one_stopped(tmp_path):
    """Offsets and wall times continue after a reload (they used to restart from the service's start)."""
    clf = load_model(defaults())
    x = read_wav(SAMPLE)
    half = len(x) // 2
    whole = Pipeline(clf, wall_start=1000.0)
    first = Pipeline(clf, wall_start=1000.0)
    first.push(x[:half])
    second = Pipeline(clf, wall_start=5.0)
    second.resume_from(first)
    assert second.offset_s == pytest.approx(half / 16000) and second.wall_start == 1000.0
    whole.push(x[:half])
    a, b = whole.push(x[half:]).windows, second.push(x[half:]).windows
    # a window needs a full window of new audio; then windows follow every hop up to the stream's end,
    # in the stream's time, like the uninterrupted pipeline's
    window_s, hop_s = clf.meta.window_s, clf.meta.hop_s
    assert b and b[0].offset_s >= half / 16000 + window_s - 0.011
    assert np.allclose(np.diff([w.offset_s for w in b]), hop_s, atol=0.011)
    assert abs(b[-1].offset_s - a[-1].offset_s) < hop_s
    assert state_payload(second.state)["time"] >= "1970-01-01T00:16:40"


def test_with_changes_validates_like_the_file():
    with pytest.raises(ConfigError, match=r"command line: \[gate\] min_dbfs: expected a number in -120..0"):
        defaults().with_changes({"gate": {"min_dbfs": 5}})
    cfg = defaults().with_changes({"audio": {"source": "file:x.wav"}})
    assert cfg.audio.source == "file:x.wav" and defaults().audio.source == "mic:default"
    assert cfg.changed_keys(defaults()) == ["audio.source"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.audio.source = "mic:default"  # frozen: one config, changed only through validation


def test_file_source_reports_finished_only_after_its_chunks_are_taken(tmp_path):
    src = FileSource(str(SAMPLE), speed=0, chunk_ms=100, queue_chunks=10_000).start()
    src._thread.join(10)
    assert not src.finished, "chunks are still queued"
    chunks = []
    while not src.queue.empty():
        chunks.append(src.queue.get())
    assert src.finished
    audio = np.concatenate([c for c in chunks if isinstance(c, np.ndarray)])
    assert audio.size == read_wav(SAMPLE).size
