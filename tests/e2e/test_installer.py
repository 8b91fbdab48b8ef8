"""The installer's day end to end, with the centre, the broker and the gateway as processes.

A new installation shows up at the centre with its devices; ``trygg gateway test-alarm``
sends a test alarm through broker, daemon, outbox, uplink and centre and reports the round
trip, and the centre shows it as a test; a device command queued at the centre reaches the
running gateway, is applied and acknowledged, and the next alarm carries the new room.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.simulators.zigbee_home import ZigbeeHome
from gateway.config import load_config
from response_center import admin
from response_center.db.engine import make_engine
from tests.e2e.conftest import Operator
from tests.support.wait import eventually
from trygg.localsite import HOME, MUNICIPALITY, LocalSite
from trygg.pki import ServerCertificate

INSTALLER = "installer"
INSTALLER_PASSWORD = "correct horse battery staple"


@pytest.fixture
def site(
    tmp_path: Path, local_tls: ServerCertificate, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalSite]:
    """The whole installation, with a 5 s heartbeat so commands travel within seconds."""
    monkeypatch.setenv("TRYGG_CENTER_HEARTBEAT_INTERVAL_S", "5")
    installation = LocalSite(tmp_path / "site")
    try:
        installation.start()
        engine = make_engine(installation.database_url)
        try:
            with engine.begin() as conn:
                admin.create_user(
                    conn, INSTALLER, INSTALLER_PASSWORD, "installer", [MUNICIPALITY[0]]
                )
        finally:
            engine.dispose()
        yield installation
    finally:
        installation.stop()


class Installer:
    """The centre's installation API, as an installer's tablet would use it."""

    def __init__(self, site: LocalSite) -> None:
        self.client = httpx.AsyncClient(
            base_url=site.center_url, verify=ssl.create_default_context(cafile=site.ca_file)
        )
        self.headers: dict[str, str] = {}

    async def login(self) -> None:
        answer = await self.client.post(
            "/v1/session",
            json={"username": INSTALLER, "password": INSTALLER_PASSWORD, "client": "api"},
        )
        assert answer.status_code == 200, answer.text
        self.headers = {"Authorization": f"Bearer {answer.json()['token']}"}

    async def gateway(self) -> dict[str, Any]:
        answer = await self.client.get(f"/v1/homes/{HOME[0]}/installation", headers=self.headers)
        assert answer.status_code == 200, answer.text
        (gateway,) = answer.json()["gateways"]
        found: dict[str, Any] = gateway
        return found

    async def command(self, **body: Any) -> dict[str, Any]:
        answer = await self.client.post(
            f"/v1/homes/{HOME[0]}/installation/commands", json=body, headers=self.headers
        )
        assert answer.status_code == 202, answer.text
        command: dict[str, Any] = answer.json()["command"]
        return command


@pytest.fixture
async def installer(site: LocalSite) -> AsyncIterator[Installer]:
    person = Installer(site)
    await person.login()
    try:
        yield person
    finally:
        await person.client.aclose()


async def trygg_gateway(site: LocalSite, *args: str) -> tuple[int, str, str]:
    """Run ``trygg gateway <args>`` as the installer does, on the gateway's state dir."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trygg", "gateway", *args, "--state-dir", str(site.gateway_dir),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def by_name(gateway: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in gateway["devices"]}


async def test_test_alarm_goes_through_the_whole_chain_and_stays_a_test(
    site: LocalSite, home: ZigbeeHome, operator: Operator, installer: Installer
) -> None:
    code, out, err = await trygg_gateway(site, "test-alarm")
    assert code == 0, err
    assert "Test alarm committed by the gateway as event" in out
    found = re.search(r"receipt accepted, round trip (\d+) ms", out)
    assert found is not None, out
    rtt_ms = int(found.group(1))
    assert "no operator is paged" in out

    assert await operator.alarms() == []  # nothing waits in the operator's queue
    (test,) = await operator.alarms(state="resolved")
    assert (test["type"], test["outcome"], test["resolved_by"]) == (
        "alarm.test",
        "test_alarm",
        "system",
    )
    # The gateway reports the round trip in its next heartbeat; the installer sees it.
    shown = await eventually(
        installer.gateway,
        lambda gw: (gw["last_test_alarm"] or {}).get("rtt_ms") is not None,
        what="the test alarm's round trip at the centre",
        timeout=20,
    )
    assert shown["last_test_alarm"]["rtt_ms"] == rtt_ms
    assert shown["last_test_alarm"]["event_id"] == test["event_id"]

    # A real press right after is a real alarm.
    await home.press()
    (alarm,) = await eventually(operator.alarms, what="the real alarm", timeout=20)
    assert alarm["type"] == "alarm.button"


async def test_the_installation_shows_up_and_a_centre_command_moves_a_device(
    site: LocalSite, home: ZigbeeHome, operator: Operator, installer: Installer
) -> None:
    await home.press()
    await eventually(operator.alarms, what="the first alarm", timeout=20)
    gateway = await eventually(
        installer.gateway,
        lambda gw: by_name(gw).get("bedroom/button", {}).get("battery") is not None,
        what="the gateway's devices at the centre",
        timeout=20,
    )
    devices = by_name(gateway)
    assert devices["bedroom/button"]["room"] == "bedroom"
    assert devices["bedroom/button"]["profile"] == "aqara.WXKG11LM"
    assert devices["bedroom/button"]["battery"] == 100
    assert devices["hall/door"]["room"] == "hall" and devices["hall/door"]["allow_listed"]
    assert gateway["last_heartbeat_at"] is not None

    code, out, err = await trygg_gateway(site, "devices")
    assert code == 0, err
    (button_line,) = [line for line in out.splitlines() if line.startswith("bedroom/button")]
    assert "aqara.WXKG11LM" in button_line and "100 %" in button_line
    assert button_line.endswith("online")

    queued = await installer.command(
        op="move", name="bedroom/button", room="kitchen", place="Korttidsavdeling 2"
    )
    done = await eventually(
        installer.gateway,
        lambda gw: gw["commands"][0]["state"] in ("applied", "failed"),
        what="the command applied by the gateway",
        timeout=30,
    )
    assert done["commands"][0]["id"] == queued["id"]
    assert done["commands"][0]["state"] == "applied", done["commands"][0]
    moved = next(
        d for d in load_config(site.gateway_dir).devices if d.friendly_name == "bedroom/button"
    )
    assert (moved.room, moved.place, moved.profile) == (
        "kitchen",
        "Korttidsavdeling 2",
        "aqara.WXKG11LM",
    )

    await home.press()
    alarms = await eventually(
        operator.alarms, lambda found: len(found) == 2, what="the second alarm", timeout=20
    )
    # The operator sees where the resident is now: VKP's "[room] @ [place]".
    assert sorted(a["room"] for a in alarms) == ["bedroom", "kitchen @ Korttidsavdeling 2"]


async def test_a_test_alarm_the_centre_cannot_take_now_stays_queued_and_arrives_later(
    site: LocalSite, operator: Operator
) -> None:
    assert site.center is not None
    site.center.kill()  # the centre crashes (a clean stop waits for idle connections)
    code, out, err = await trygg_gateway(site, "test-alarm", "--timeout", "2")
    assert code == 2
    assert "Test alarm committed by the gateway" in out
    assert "no_receipt: no receipt from the centre within 2 s" in err
    assert "stays queued" in err and err.count("\n") == 1

    site.center.start()
    # The installer tries again: the first test alarm was kept and goes with the second.
    code, out, err = await trygg_gateway(site, "test-alarm")
    assert code == 0, err
    assert "receipt accepted" in out
    tests = await eventually(
        lambda: operator.alarms(state="resolved"),
        lambda found: len(found) == 2,
        what="both test alarms at the centre",
        timeout=30,
    )
    assert {(t["type"], t["outcome"]) for t in tests} == {("alarm.test", "test_alarm")}
    # (The centre may have raised "gateway offline" while it was down; no test alarm is open.)
    assert [a for a in await operator.alarms() if a["type"] == "alarm.test"] == []
