"""The brokers ser-edge starts itself, both on loopback only.

`EmbeddedBroker`: amqtt (pure Python) on its own asyncio loop in a daemon thread, for the demo and for
trying ser-edge without installing a broker. A real installation points [mqtt] broker at Mosquitto or
Home Assistant's broker instead.

`Mosquitto`: a real mosquitto process, for the test fixtures and bench/fleet.py (one definition for both).
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 1883):
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)

    def _run(self) -> None:
        from amqtt.broker import Broker

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        asyncio.set_event_loop(self._loop)
        config = {"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                  "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
        try:
            self.broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(self.broker.start())
        except BaseException as e:  # reported to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        self._thread.start()
        self._ready.wait(timeout)
        if self._error:
            raise RuntimeError(f"embedded broker failed to start on {self.host}:{self.port}: {self._error}")
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.broker.shutdown(), self._loop)
        try:
            fut.result(5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Mosquitto:
    """mosquitto on 127.0.0.1:port, configured in `tmp`; restartable on the same port."""

    def __init__(self, tmp: Path, port: int | None = None, extra_conf: str = "", persistent: bool = False,
                 anonymous: bool = True):
        """persistent: sessions and queued QoS 1 messages survive a broker restart (on disk in `tmp`).
        anonymous=False: clients need a user from a password_file given in extra_conf."""
        self.tmp, self.port = Path(tmp), port or free_port()
        self.conf = self.tmp / "mosquitto.conf"
        persistence = f"persistence true\npersistence_location {self.tmp}/" if persistent else "persistence false"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous {str(anonymous).lower()}\n"
                             f"{persistence}\nuser {getpass.getuser()}\n{extra_conf}")
        self.log = self.tmp / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> Mosquitto:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        # its log goes to a file: a pipe nobody reads fills after ~64 KB of log and then blocks the broker
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start: " + self.log.read_text())

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"
