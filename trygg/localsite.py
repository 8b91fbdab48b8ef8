"""A whole Trygg installation on one machine: centre, home broker and gateway as processes.

The demo, the end-to-end tests and the benchmarks all need the same thing: a response
centre under uvicorn with verified TLS, a home broker, and a gateway enrolled with a
one-time code exactly as an installer would do it. Each part runs as its own process so
it can be stopped, restarted or SIGKILLed independently, as in a real home.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from drivers.mqtt.local_broker import Mosquitto
from drivers.simulators.zigbee_home import BUTTON, DOOR
from gateway.config import AllowedDevice, BrokerConfig, GatewayConfig, OutboxLimits, save_config
from gateway.daemon import READY_MESSAGE
from gateway.identity import Enrolment, enroll, init_gateway
from response_center import admin
from response_center.db.engine import make_engine, migrate
from response_center.enrolment import create_enrolment_code
from trygg.net import free_port
from trygg.pki import ServerCertificate, create_local_tls
from trygg.wire.clock import system_clock

log = logging.getLogger("trygg.localsite")

MUNICIPALITY = ("0301", "Oslo (demo)")
HOME = ("H-0001", "Demoveien 1, 0150 Oslo")
RESIDENT = ("R-0001", "Kari Demo")
OPERATOR = "operator"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0

LogSink = Callable[[str, str], None]
"""Receives (process name, line) for every line a child writes to stderr."""


def forward_to_stderr(name: str, line: str) -> None:
    sys.stderr.write(f"[{name}] {line}\n")


def discard(name: str, line: str) -> None:
    """A sink that keeps nothing beyond the process's own short tail."""


class ChildProcess:
    """A child process that is ready when it prints a given line on stderr."""

    def __init__(self, name: str, argv: Sequence[str], ready_text: str, sink: LogSink) -> None:
        self.name = name
        self.argv = list(argv)
        self.ready_text = ready_text
        self.sink = sink
        self.tail: deque[str] = deque(maxlen=200)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"the {self.name} is already running")
        ready = threading.Event()
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        threading.Thread(
            target=self._read, args=(self.process, ready), name=f"{self.name}-log", daemon=True
        ).start()
        if not ready.wait(START_TIMEOUT_S) or not self.running:
            self.kill()
            tail = "\n".join(self.tail)
            raise RuntimeError(f"the {self.name} did not start:\n{tail}")

    def _read(self, process: subprocess.Popen[bytes], ready: threading.Event) -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            self.sink(self.name, line)
            if self.ready_text in line:
                ready.set()
        ready.set()  # the process ended: let start() see it instead of waiting out the timeout

    def stop(self) -> int | None:
        """SIGTERM, then wait for a clean exit (SIGKILL only if it hangs)."""
        return self._end(signal.SIGTERM)

    def kill(self) -> int | None:
        """SIGKILL: the process gets no chance to flush or acknowledge anything."""
        return self._end(signal.SIGKILL)

    def _end(self, signum: signal.Signals) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()
        return process.returncode


def _trygg(*args: str) -> list[str]:
    return [sys.executable, "-m", "trygg", *args]


def home_devices() -> list[AllowedDevice]:
    """The simulated home's allow-list: its button and door sensor, in their rooms."""
    return [
        AllowedDevice(
            friendly_name=BUTTON.friendly_name,
            ieee=BUTTON.ieee,
            profile="aqara.WXKG11LM",
            room="bedroom",
            resident_ref=RESIDENT[0],
        ),
        AllowedDevice(
            friendly_name=DOOR.friendly_name,
            ieee=DOOR.ieee,
            profile="aqara.MCCGQ11LM",
            room="hall",
            resident_ref=RESIDENT[0],
        ),
    ]


@dataclass
class LocalSite:
    """One centre, one home broker and one gateway under ``workdir``."""

    workdir: Path
    database_url: str = ""
    center_port: int = 0
    sink: LogSink = discard
    center_args: Sequence[str] = ()
    outbox_limits: OutboxLimits = field(default_factory=OutboxLimits)
    operator_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    tls: ServerCertificate | None = None
    broker: Mosquitto | None = None
    center: ChildProcess | None = None
    gateway: ChildProcess | None = None
    enrolment: Enrolment | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.database_url = self.database_url or f"sqlite:///{self.center_dir / 'center.sqlite'}"
        self.center_port = self.center_port or free_port()

    @property
    def center_dir(self) -> Path:
        return self.workdir / "center"

    @property
    def gateway_dir(self) -> Path:
        return self.workdir / "gateway"

    @property
    def center_url(self) -> str:
        return f"https://127.0.0.1:{self.center_port}"

    @property
    def ca_file(self) -> Path:
        assert self.tls is not None, "prepare_center() first"
        return self.tls.ca_file

    # -- the centre ---------------------------------------------------------------------

    def prepare_center(self) -> None:
        """TLS, schema, a municipality with one home and resident, and an operator login."""
        self.tls = create_local_tls(self.workdir / "tls")
        self.center_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        migrate(self.database_url)
        engine = make_engine(self.database_url)
        try:
            with engine.begin() as conn:
                admin.create_municipality(conn, *MUNICIPALITY)
                admin.create_home(conn, MUNICIPALITY[0], *HOME)
                admin.create_resident(
                    conn, MUNICIPALITY[0], HOME[0], display_name=RESIDENT[1], ref=RESIDENT[0]
                )
                admin.create_user(
                    conn, OPERATOR, self.operator_password, "operator", [MUNICIPALITY[0]]
                )
        finally:
            engine.dispose()
        tls = self.tls
        self.center = ChildProcess(
            "centre",
            _trygg(
                "center", "serve", "--host", "127.0.0.1", "--port", str(self.center_port),
                "--tls-cert", str(tls.cert_file), "--tls-key", str(tls.key_file),
                "--database-url", self.database_url, "--state-dir", str(self.center_dir),
                *self.center_args,
            ),
            "Uvicorn running on",
            self.sink,
        )  # fmt: skip

    def start_center(self) -> None:
        if self.center is None:
            self.prepare_center()
        assert self.center is not None
        self.center.start()

    def issue_code(self) -> str:
        engine = make_engine(self.database_url)
        try:
            with engine.begin() as conn:
                return create_enrolment_code(
                    conn, MUNICIPALITY[0], HOME[0], timedelta(hours=1), "installer", system_clock
                )
        finally:
            engine.dispose()

    # -- the home -------------------------------------------------------------------------

    def start_broker(self, *, log_all: bool = False) -> Mosquitto:
        if self.broker is None:
            self.broker = Mosquitto(self.workdir / "broker", log_all=log_all)
        self.broker.start()
        return self.broker

    def enrol_gateway(self, devices: Sequence[AllowedDevice] | None = None) -> Enrolment:
        """``trygg gateway init`` and ``enroll`` as an installer runs them, plus the allow-list."""
        assert self.broker is not None, "start_broker() first"
        init_gateway(self.gateway_dir)
        config = GatewayConfig(
            state_dir=self.gateway_dir,
            broker=BrokerConfig(port=self.broker.port),
            devices=list(home_devices() if devices is None else devices),
            outbox=self.outbox_limits,
        )
        save_config(config)
        self.enrolment = asyncio.run(
            enroll(self.gateway_dir, self.center_url, self.issue_code(), ca_file=self.ca_file)
        )
        self.gateway = ChildProcess(
            "gateway",
            _trygg("gateway", "run", "--state-dir", str(self.gateway_dir)),
            READY_MESSAGE,
            self.sink,
        )
        return self.enrolment

    def start_gateway(self) -> None:
        assert self.gateway is not None, "enrol_gateway() first"
        self.gateway.start()

    # -- all of it --------------------------------------------------------------------------

    def start(self) -> None:
        """Centre, broker and an enrolled, running gateway."""
        self.start_center()
        self.start_broker()
        self.enrol_gateway()
        self.start_gateway()

    def stop(self) -> None:
        for part in (self.gateway, self.center):
            if part is not None:
                part.stop()
        if self.broker is not None:
            self.broker.stop()
