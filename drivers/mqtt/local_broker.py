"""A mosquitto broker of our own on a free loopback port, with persistence in a work dir.

The demo runs the home's broker this way, and the tests use it as their real broker.
Start-up waits for the broker's own "running" line on stderr, never a fixed sleep. The full
broker log (``log_type all``) is kept so a test can wait for what the broker saw,
e.g. ``Received PUBACK from <client>``: an observer the client under test cannot fake.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from trygg.net import free_port

START_TIMEOUT_S = 10.0
_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next((c for c in _CANDIDATES if Path(c).exists()), None)
    if found is None:
        raise RuntimeError(
            "mosquitto is not installed. Install the Debian package: sudo apt-get install mosquitto"
        )
    return found


class Mosquitto:
    """One broker; ``start()``, ``stop()`` and ``restart()`` keep the same port."""

    def __init__(self, workdir: Path, port: int | None = None, *, log_all: bool = True) -> None:
        """``log_all=False`` keeps only notices and worse, for long-running use (the demo)."""
        self.workdir = workdir
        self.log_all = log_all
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.data_dir = workdir / "data"
        self.config_file = workdir / "mosquitto.conf"
        self._process: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []
        self._changed = threading.Condition()

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "autosave_interval 0",
            "log_dest stderr",
            *(
                ["log_type all"]
                if self.log_all
                else [
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type information",
                ]
            ),
            "log_timestamp false",
            "max_queued_messages 10000",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root mosquitto drops to the 'mosquitto' user, which cannot read our temp dir.
            lines.append("user root")
        self.config_file.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("mosquitto is already running")
        self._write_config()
        started = len(self._lines)
        self._process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        ready: queue.Queue[bool] = queue.Queue()
        threading.Thread(target=self._read_log, args=(self._process, ready), daemon=True).start()
        try:
            ok = ready.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            ok = False
        if not ok:
            self.stop()
            log = "\n".join(self._lines[started:])
            raise RuntimeError(f"mosquitto did not start on port {self.port}:\n{log}")

    def _read_log(self, process: subprocess.Popen[bytes], ready: queue.Queue[bool]) -> None:
        assert process.stderr is not None
        announced = False
        for raw in process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
            if not announced and re.search(r"mosquitto version \S+ running", line):
                announced = True
                ready.put(True)
        if not announced:
            ready.put(False)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM): mosquitto writes its persistence file on the way out."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def restart(self, *, keep_state: bool = True) -> None:
        """Stop and start on the same port; ``keep_state=False`` loses sessions too."""
        self.stop()
        if not keep_state:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_lines(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    def mark(self) -> int:
        """A position in the log; pass it to :meth:`wait_for_log` to see only newer lines."""
        with self._changed:
            return len(self._lines)

    def wait_for_log(self, pattern: str, *, after: int = 0, timeout: float = 10.0) -> str:
        """Block until a log line after ``after`` matches ``pattern``; return that line."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = after
        with self._changed:
            while True:
                for line in self._lines[seen:]:
                    if regex.search(line):
                        return line
                seen = len(self._lines)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"mosquitto never logged /{pattern}/ within {timeout}s")
                self._changed.wait(remaining)

    async def log_line(self, pattern: str, *, after: int = 0, within_s: float = 10.0) -> str:
        """:meth:`wait_for_log` for async tests: it keeps the event loop (and MQTT) running."""
        return await asyncio.to_thread(self.wait_for_log, pattern, after=after, timeout=within_s)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
