"""systemd unit (verify, exposure <= 2.0), installer and uninstaller in --root mode, firmware_config."""
import re
import shutil
import subprocess

import pytest
from conftest import ROOT

from edge import config as C

UNIT = ROOT / "systemd" / "ser-edge.service"
needs_systemd = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")


@needs_systemd
def test_unit_verifies(tmp_path):
    # the real ExecStart exists only on an installed Pi: point it at a stand-in, check every other directive
    unit = tmp_path / "ser-edge.service"
    unit.write_text(UNIT.read_text().replace("/opt/ser-edge/venv/bin/ser-edge", "/bin/true"))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@needs_systemd
def test_unit_exposure_is_at_most_2(tmp_path):
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for ser-edge.service: ([\d.]+)", r.stdout)
    assert m, r.stdout[-500:] + r.stderr
    assert float(m.group(1)) <= 2.0


def test_unit_has_the_required_settings():
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartSec=5", "StartLimitBurst=",
                 "User=ser-edge", "SupplementaryGroups=audio gpio", "StateDirectory=ser-edge",
                 "ConfigurationDirectory=ser-edge", "LoadCredential=mqtt_password:", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                 "RestrictAddressFamilies=", "DeviceAllow=char-alsa", "SystemCallFilter=@system-service",
                 "MemoryMax=", "After=network-online.target sound.target", "OPENBLAS_NUM_THREADS=1"):
        assert line in text, line


def test_installer_root_mode_is_idempotent_and_keeps_config(tmp_path):
    root = tmp_path / "root"
    r = subprocess.run(
        [str(ROOT / "systemd/install.sh"), "--root", str(root), "--skip-venv"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    cfg = root / "etc/ser-edge/ser-edge.toml"
    assert (root / "etc/systemd/system/ser-edge.service").read_text() == UNIT.read_text()
    C.load(cfg)  # the installed config is valid
    assert oct(cfg.stat().st_mode & 0o777) == "0o640"
    assert oct((root / "etc/ser-edge/mqtt_password").stat().st_mode & 0o777) == "0o600"
    cfg.write_text("[device]\nid = 'kitchen'\n")
    r = subprocess.run(
        [str(ROOT / "systemd/install.sh"), "--root", str(root), "--skip-venv"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "kept existing" in r.stdout
    assert "kitchen" in cfg.read_text()
    (root / "var/lib/ser-edge").mkdir(parents=True)
    (root / "var/lib/ser-edge/outbox.sqlite").write_text("queue")
    r = subprocess.run([str(ROOT / "systemd/uninstall.sh"), "--root", str(root)], capture_output=True, text=True)
    assert r.returncode == 0
    assert not (root / "etc/systemd/system/ser-edge.service").exists() and not (root / "opt/ser-edge").exists()
    assert cfg.exists() and (root / "var/lib/ser-edge/outbox.sqlite").exists()
    subprocess.run(
        [str(ROOT / "systemd/uninstall.sh"), "--root", str(root), "--purge"], check=True, capture_output=True
    )
    assert not cfg.exists() and not (root / "var/lib/ser-edge").exists()


def test_installer_refuses_unknown_options():
    r = subprocess.run([str(ROOT / "systemd/install.sh"), "--frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option --frobnicate" in r.stderr


def test_firmware_config_files_exist_and_asound_parses():
    fc = ROOT / "firmware_config"
    for name in ("README.md", "config.txt", "asound.conf", "99-ser-edge-mic.rules", "ser-edge.toml"):
        assert (fc / name).exists(), name
    text = (fc / "asound.conf").read_text()
    assert "dsnoop" in text and "16000" in text
    if shutil.which("arecord"):
        # alsa-lib parses it (the device itself needs real hardware)
        r = subprocess.run(
            ["arecord", "-L"],
            capture_output=True,
            text=True,
            env={"ALSA_CONFIG_PATH": str(fc / "asound.conf"), "PATH": "/usr/bin:/bin"},
        )
        assert "parse error" not in r.stderr.lower()


def test_the_package_data_covers_every_file_the_device_loads():
    """What edge/ reads at run time (model, voice-check weights, demo recording, schemas) must be in
    the wheel: a file the package-data patterns miss works from the source tree and fails installed."""
    import fnmatch
    import tomllib

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for sub in ("models", "samples", "schemas"):
        patterns = package_data.get(f"edge.{sub}", [])
        for f in (ROOT / "edge" / sub).iterdir():
            missing = not any(fnmatch.fnmatch(f.name, p) for p in patterns)
            assert not missing, f"edge/{sub}/{f.name} would be missing from the wheel"
