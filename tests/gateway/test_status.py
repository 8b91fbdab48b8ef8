"""``gateway status`` reads the live database read-only, beside the running writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import OutboxLimits
from gateway.identity import Enrolment, init_gateway, save_enrolment
from gateway.status import collect_status, format_status
from tests.gateway.conftest import FakeClock, OpenOutbox, draft
from trygg.wire.receipt import Receipt


def enrol(state_dir: Path) -> None:
    save_enrolment(
        state_dir,
        Enrolment(
            center_url="https://centre.example.no",
            gateway_id="gw-0042",
            municipality="0301",
            home="home-7",
            center_public_key="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            center_kid="kid-centre",
            heartbeat_interval_s=60,
            enrolled_at="2026-11-20T09:00:00.000Z",
        ),
    )


async def test_status_shows_the_queue_while_the_outbox_is_open(
    tmp_path: Path, open_outbox: OpenOutbox, clock: FakeClock
) -> None:
    init_gateway(tmp_path)
    enrol(tmp_path)
    outbox = await open_outbox(limits=OutboxLimits(max_rows=100, alarm_reserve_rows=10))
    await outbox.commit([draft("measurement")] * 90)
    await outbox.commit([draft("measurement")])  # one evicted, and one for the report
    signed = await outbox.commit([draft("alarm"), draft("alarm", "alarm.fall")])
    await outbox.claim_batch(1)
    await outbox.settle(
        [
            Receipt(
                gateway_id="gw-test",
                event_id=signed[0].event.event_id,
                status="rejected",
                reason="malformed",
            )
        ]
    )
    await outbox.claim_batch(1)  # the other alarm is in flight right now
    clock.advance(300)

    status = collect_status(tmp_path, clock)

    assert status.problems == ()
    assert status.enrolment is not None and status.enrolment.gateway_id == "gw-0042"
    stats = status.outbox
    assert stats is not None
    assert stats == await outbox.recount()  # the reader sees what the writer committed
    assert (stats.depth, stats.alarms_queued, stats.dead_alarms) == (91, 1, 1)
    assert stats.oldest_queued_age_s == 300
    assert stats.evicted_by_class == {"measurement": 2}

    text = format_status(status)
    assert "gw-0042 at https://centre.example.no" in text
    assert "home-7 in municipality 0301" in text
    assert "91 waiting, 1 of them alarms" in text
    assert "oldest queued:   5 min 0 s" in text
    assert "1 ALARM(S) REJECTED BY THE CENTRE" in text
    assert "evicted:         2 (measurement 2)" in text
    assert "last delivery:   never" in text
    table = {line.split()[0]: line.split()[1:] for line in text.splitlines()[-4:]}
    assert table["alarm"] == ["0", "1", "0", "1"]
    assert table["measurement"] == ["89", "0", "0", "0"]
    assert table["technical"] == ["1", "0", "0", "0"]


async def test_status_json_while_the_daemon_holds_the_database(
    tmp_path: Path, open_outbox: OpenOutbox, capsys: pytest.CaptureFixture[str]
) -> None:
    init_gateway(tmp_path)
    outbox = await open_outbox()
    await outbox.commit([draft("alarm"), draft("activity")])

    assert main(["status", "--json", "--state-dir", str(tmp_path)]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["initialised"] is True
    assert report["enrolment"] is None
    assert report["outbox"]["depth"] == 2
    assert report["outbox"]["alarms_queued"] == 1
    assert report["outbox"]["by_class"]["activity"]["queued"] == 1
    assert report["outbox"]["boot_id"] == outbox.boot_id
    # Still writable by its owner afterwards: the reader took no lock it kept.
    await outbox.commit([draft("alarm")])


def test_status_of_a_fresh_machine_says_what_to_do(tmp_path: Path) -> None:
    text = format_status(collect_status(tmp_path / "nothing-here"))
    assert "none (run 'trygg gateway init')" in text
    assert "not enrolled" in text
    assert "no database yet" in text


def test_damaged_files_are_reported_not_raised(tmp_path: Path) -> None:
    init_gateway(tmp_path)
    (tmp_path / "enrolment.json").write_text("{not json")
    (tmp_path / "gateway.sqlite").write_bytes(b"this is not a database" * 100)
    status = collect_status(tmp_path)
    assert len(status.problems) == 2
    assert "damaged" in status.problems[0]
    assert "cannot read the outbox database" in status.problems[1]
    assert "problem:" in format_status(status)
