"""Config validation: every error names the file, the key (and line) and what was expected."""
import os

import pytest
from conftest import ROOT, ser_edge
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import config as C


def write(tmp_path, text):
    p = tmp_path / "ser-edge.toml"
    p.write_text(text)
    return p


def test_documented_example_is_in_sync_with_the_schema():
    assert (ROOT / "firmware_config" / "ser-edge.toml").read_text() == C.example_toml() + "\n" or \
        (ROOT / "firmware_config" / "ser-edge.toml").read_text() == C.example_toml()
    cfg = C.load(ROOT / "firmware_config" / "ser-edge.toml")
    assert cfg == C.defaults()


@pytest.mark.parametrize(
    "text,needle",
    [
        (
            "[mqtt]\nbrokr = 'x'\n",
            r"ser-edge.toml \(line 2\): \[mqtt\] brokr: unknown key; expected one of enabled, broker",
        ),
        ("[mqt]\n", r"ser-edge.toml \(line 1\): unknown section \[mqt\]"),
        ("[model]\nnum_threads = 'two'\n", r"\[model\] num_threads: expected an integer in 1..8, got str 'two'"),
        ("[model]\nnum_threads = 0\n", r"\[model\] num_threads: expected an integer in 1..8, got 0"),
        ("[gate]\nmin_dbfs = 10\n", r"\[gate\] min_dbfs: expected a number in -120..0, got 10"),
        ("[mqtt]\nenabled = 1\n", r"\[mqtt\] enabled: expected true or false, got int 1"),
        ("[smoothing]\nmethod = 'median'\n", r"\[smoothing\] method: expected one of 'ema', 'mean'"),
        ("[audio]\nsource = 'usb'\n", r"\[audio\] source: expected mic:NAME, cmd:COMMAND, file:PATH or stdin"),
        ("[mqtt]\nbroker = 'http://x'\n", r"\[mqtt\] broker: expected mqtt://\[user@\]host\[:port\]"),
        ("[leds]\nrgb_pins = [1, 2]\n", r"\[leds\] rgb_pins: expected three BCM pin numbers"),
        ("[leds]\nemotion_pins = {angry = 99}\n", r"emotion_pins.angry: expected a BCM pin 1..27, got 99"),
        ("[model\n", r"not valid TOML"),
        ("mqtt = 3\n", r"'mqtt' must be a \[section\] table"),
    ],
)
def test_config_errors_name_file_key_and_expectation(tmp_path, text, needle):
    with pytest.raises(C.ConfigError, match=needle):
        C.load(write(tmp_path, text))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(C.ConfigError, match="nope.toml: cannot read config"):
        C.load(tmp_path / "nope.toml")
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(C.ConfigError, match="bin.toml"):
        C.load(p)


def test_check_config_cli_exit_codes(tmp_path):
    good = write(tmp_path, "[device]\nid = 'kitchen'\n")
    r = ser_edge("check-config", str(good))
    assert r.returncode == 0 and "OK" in r.stdout
    bad = write(tmp_path, "[device]\nid = 'kitchen'\ncolour = 'red'\n")
    r = ser_edge("check-config", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "ser-edge.toml (line 3): [device] colour: unknown key" in r.stderr


def test_password_from_file_and_environment(tmp_path, monkeypatch):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    cfg = C.load(write(tmp_path, f"[mqtt]\nusername = 'u'\npassword_file = '{pw}'\n"))
    assert C.read_password(cfg) == "s3cret"
    monkeypatch.setenv("SER_MQTT_PASSWORD", "fromenv")
    assert C.read_password(cfg) == "fromenv"


def test_world_readable_config_with_credentials_warns(tmp_path, caplog):
    p = write(tmp_path, "[mqtt]\nusername = 'u'\n")
    os.chmod(p, 0o644)
    C.load(p)
    assert "world-readable" in caplog.text
    caplog.clear()
    os.chmod(p, 0o640)
    C.load(p)
    assert "world-readable" not in caplog.text


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_parser_raises_only_its_own_error(text):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.toml"
        p.write_text(text)
        try:
            C.load(p)
        except C.ConfigError:
            pass


def test_config_reference_tables_are_in_the_docs():
    """Every row `python -m edge.config` generates stands in docs/config.md, under its own section."""
    doc = (ROOT / "docs" / "config.md").read_text()
    sections = {s.split("\n", 1)[0]: s for s in doc.split("\n## ")[1:]}
    for block in C.reference_tables().strip().split("## ")[1:]:
        title, body = block.split("\n", 1)
        rows = [line for line in body.splitlines() if line.startswith("| `")]
        assert title in sections, f"docs/config.md has no section '## {title}'"
        stale = [r for r in rows if r not in sections[title]]
        assert not stale, f"docs/config.md [{title}] differs from the schema: {stale}"
