"""``trygg gateway pair`` as a process: Ctrl-C (SIGINT) and SIGTERM close the pairing window.

The command runs as the installer runs it; a simulated Zigbee2MQTT bridge on a real
mosquitto is the observer of what it asked for. What it prints is read line by line.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.gateway.installer_support import NEW_BUTTON, gateway_config, simulated_bridge
from tests.support.mosquitto import Mosquitto


async def read_until(stream: asyncio.StreamReader, text: str, seen: list[str]) -> str:
    """Lines of ``stream`` up to the first containing ``text`` (kept in ``seen``)."""
    async with asyncio.timeout(20):
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError(f"the command ended before printing {text!r}: {seen}")
            line = raw.decode().rstrip()
            seen.append(line)
            if text in line:
                return line


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
async def test_a_signal_closes_the_window_the_command_opened(
    tmp_path: Path, mosquitto: Mosquitto, signum: signal.Signals, exit_code: int
) -> None:
    gateway_config(tmp_path, mosquitto)
    async with simulated_bridge(mosquitto) as bridge:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trygg", "gateway", "pair", "--minutes", "3",
            "--state-dir", str(tmp_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        out: list[str] = []
        try:
            await read_until(process.stdout, "Pairing window open for 3 min", out)
            assert bridge.join_open
            assert await bridge.join(NEW_BUTTON)
            await read_until(process.stdout, "profile aqara.WXKG11LM (button)", out)
            await read_until(process.stdout, "not allow-listed; to add it", out)

            process.send_signal(signum)
            await read_until(process.stdout, "Pairing window closed.", out)
            async with asyncio.timeout(20):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        err = (await process.stderr.read()).decode()
        assert code == exit_code, err
        last = bridge.permit_join_requests()[-1]
        assert last["time"] == 0 and not bridge.join_open
    if signum == signal.SIGINT:
        assert "trygg gateway pair: interrupted" in err
    assert "Traceback" not in err
