"""Supervision's state machine, pure: table tests per condition, windows, holds and restarts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from firmware_profiles.loader import load_profiles
from firmware_profiles.rules import device_health
from firmware_profiles.schema import Profile
from gateway.config import AllowedDevice
from gateway.inventory import DeviceHealth
from gateway.supervision import (
    Change,
    SignReader,
    Supervisor,
    on_availability,
    on_report,
    on_silence,
    priority,
    release_held,
)

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
PROFILES = load_profiles()
SMOKE = PROFILES["heiman.HS1SA"]
BUTTON = PROFILES["aqara.WXKG11LM"]
DOOR = PROFILES["aqara.MCCGQ11LM"]
RADAR = PROFILES["tuya.MIR-HE200-TY_fall"]
HOUR = timedelta(hours=1)


def fresh(name: str = "dev") -> DeviceHealth:
    return DeviceHealth(device=name, updated_at=NOW)


def feed(profile: Profile, messages: list[dict[str, Any]]) -> list[str]:
    """Each message's changes, as ``+condition``/``-condition``, one string per message."""
    state = fresh()
    out: list[str] = []
    for i, message in enumerate(messages):
        state, changes = on_report(state, SignReader(profile), message, NOW + i * HOUR)
        out.append(" ".join(("+" if c.raised else "-") + c.condition for c in changes))
    return out


@pytest.mark.parametrize(
    ("profile", "messages", "expected"),
    [
        pytest.param(
            SMOKE,
            [
                {"battery": 83, "battery_low": False},
                {"battery": 19, "battery_low": False},  # at or below 20 %: low
                {"battery": 22, "battery_low": False},  # above 20 but within 5 points: still
                {"battery": 19},
                {"battery": 26, "battery_low": False},  # clear of the band: cleared
                {"battery": 90, "battery_low": True},  # the device says so
                {"battery": 90},  # no flag in this report: unchanged
                {"battery": 90, "battery_low": False},
            ],
            ["", "+battery_low", "", "", "-battery_low", "+battery_low", "", "-battery_low"],
            id="smoke-battery-flag-and-percent-with-hysteresis",
        ),
        pytest.param(
            BUTTON,
            [{"battery": 21}, {"battery": 20}, {"battery": "low"}, {"battery": 100}],
            ["", "+battery_low", "", "-battery_low"],
            id="button-percent-only-garbage-ignored",
        ),
        pytest.param(
            DOOR,
            [{"linkquality": q} for q in (15, 15, 15, 15, 60, 60, 15, 60, 60, 60, 60)],
            ["", "", "+link_poor", "", "", "", "", "", "", "-link_poor", ""],
            id="link-three-in-a-row-each-way",
        ),
        pytest.param(
            RADAR,
            [{"linkquality": q} for q in (19, 20, 19, 19, 19)],
            ["", "", "", "", "+link_poor"],
            id="link-a-good-report-restarts-the-count",
        ),
        pytest.param(
            SMOKE,
            [
                {"tamper": False},
                {"tamper": True},
                {"tamper": True},
                {"tamper": "yes"},
                {"tamper": False},
            ],
            ["", "+tamper", "", "", "-tamper"],
            id="smoke-tamper",
        ),
        pytest.param(
            BUTTON,
            [{"tamper": True}, {"battery_low": True}],
            ["", ""],
            id="button-has-neither-tamper-nor-battery-flag",
        ),
    ],
)
def test_conditions_are_raised_once_and_cleared_once(
    profile: Profile, messages: list[dict[str, Any]], expected: list[str]
) -> None:
    assert feed(profile, messages) == expected


def test_the_state_keeps_the_last_good_values() -> None:
    state, _ = on_report(
        fresh(), SignReader(SMOKE), {"battery": 83, "linkquality": 60, "tamper": False}, NOW
    )
    later = NOW + HOUR
    state, _ = on_report(state, SignReader(SMOKE), {"battery": 300, "linkquality": "x"}, later)
    assert state.battery == 83 and state.linkquality == 60
    assert state.tamper is False and state.last_heard_at == later


def test_silence_is_raised_after_offline_after_and_cleared_by_any_report() -> None:
    after = SMOKE.supervision.offline_after
    assert after == timedelta(hours=2.5)
    state, _ = on_report(fresh(), SignReader(SMOKE), {"battery": 83}, NOW)
    _, changes = on_silence(state, SMOKE, NOW, NOW + after - timedelta(seconds=1), hold=False)
    assert changes == []
    state, (change,) = on_silence(state, SMOKE, NOW, NOW + after, hold=False)
    assert change == Change(
        "silent",
        True,
        {"silent_s": 9000, "offline_after_s": 9000, "last_heard_at": "2026-11-22T08:00:00.000Z"},
    )
    assert on_silence(state, SMOKE, NOW, NOW + 3 * after, hold=False)[1] == []
    _, changes = on_report(state, SignReader(SMOKE), {"smoke": False}, NOW + 3 * after)
    assert [(c.condition, c.raised) for c in changes] == [("silent", False)]


def test_silence_counts_from_the_window_start_and_is_held_back() -> None:
    state, _ = on_report(fresh(), SignReader(SMOKE), {}, NOW)
    window = NOW + 10 * HOUR  # e.g. the gateway started then
    assert on_silence(state, SMOKE, window, window + 2 * HOUR, hold=False)[1] == []
    assert on_silence(state, SMOKE, window, window + 3 * HOUR, hold=True)[1] == []
    assert on_silence(state, SMOKE, window, window + 3 * HOUR, hold=False)[1] != []


def test_mains_routers_are_judged_by_availability_not_silence() -> None:
    assert on_silence(fresh(), RADAR, NOW, NOW + 100 * HOUR, hold=False)[1] == []


def test_availability_both_ways_and_held_back_while_deaf() -> None:
    state, changes = on_availability(fresh(), True, hold=False)
    assert changes == [] and state.availability == "online"  # first online: recorded
    state, changes = on_availability(state, False, hold=True)
    assert changes == [] and state.availability == "offline"  # held back
    state, (raised,) = release_held(state)
    assert (raised.type, raised.data) == ("technical.device_offline", {"source": "zigbee2mqtt"})
    assert on_availability(state, False, hold=False)[1] == []
    state, (cleared,) = on_availability(state, True, hold=True)  # clearing is never held
    assert cleared.type == "technical.device_offline_cleared"
    assert release_held(state)[1] == []


@pytest.mark.parametrize(
    ("profile", "condition", "raised", "expected"),
    [
        (SMOKE, "silent", True, 2),
        (SMOKE, "silent", False, 3),
        (RADAR, "offline", True, 2),
        (BUTTON, "silent", True, 2),
        (DOOR, "silent", True, 3),
        (SMOKE, "battery_low", True, 3),
        (SMOKE, "tamper", True, 3),
    ],
)
def test_priorities(profile: Profile, condition: Any, raised: bool, expected: int) -> None:
    assert priority(Change(condition, raised), profile) == expected


# --- the Supervisor: windows, deafness, restarts ----------------------------------------------

KIT = [
    AllowedDevice(friendly_name="kitchen/smoke", profile="heiman.HS1SA", room="kitchen"),
    AllowedDevice(friendly_name="hall/door", profile="aqara.MCCGQ11LM", room="hall"),
    AllowedDevice(friendly_name="bedroom/radar", profile="tuya.MIR-HE200-TY_fall"),
]


def silent_after(supervisor: Supervisor, at: datetime) -> list[str]:
    return [f"{d.device.id if d.device else ''}:{d.type}" for d in supervisor.check(at).drafts]


def test_a_started_gateway_gives_every_device_a_fresh_window() -> None:
    supervisor = Supervisor(KIT, PROFILES)
    stored = {
        "kitchen/smoke": DeviceHealth(
            device="kitchen/smoke", updated_at=NOW, last_heard_at=NOW - 30 * HOUR
        )
    }
    start = NOW
    supervisor.load(stored, start, fresh=True)
    assert silent_after(supervisor, start + 2 * HOUR) == []
    drafts = supervisor.check(start + timedelta(hours=2.5)).drafts
    assert [(d.type, d.priority, d.device.id if d.device else None) for d in drafts] == [
        ("technical.device_silent", 2, "kitchen/smoke"),
        ("technical.device_silent", 3, "hall/door"),
    ]
    assert drafts[0].data["last_heard_at"] == "2026-11-21T02:00:00.000Z"
    assert drafts[0].device is not None and drafts[0].device.room == "kitchen"
    assert silent_after(supervisor, start + 10 * HOUR) == [], "raised once"


def test_a_restart_after_a_raise_does_not_raise_again_and_still_clears() -> None:
    supervisor = Supervisor(KIT, PROFILES)
    supervisor.load({}, NOW, fresh=True)
    outcome = supervisor.check(NOW + 3 * HOUR)
    assert len(outcome.drafts) == 2
    saved = {w.keywords["health"].device: w.keywords["health"] for w in outcome.writes}  # type: ignore[attr-defined]
    restarted = Supervisor(KIT, PROFILES)
    restarted.load(saved, NOW + 4 * HOUR, fresh=True)
    assert restarted.check(NOW + 20 * HOUR).drafts == []
    smoke = KIT[0]
    cleared = restarted.heard(smoke, {"battery": 80}, NOW + 21 * HOUR)
    assert [d.type for d in cleared.drafts] == ["technical.device_silent_cleared"]
    assert cleared.drafts[0].priority == 3


def test_deaf_time_does_not_count_as_silence() -> None:
    supervisor = Supervisor(KIT[:1], PROFILES)
    supervisor.load({}, NOW, fresh=True)
    supervisor.heard(KIT[0], {"battery": 80}, NOW)
    supervisor.set_deaf("bridge", True, NOW + HOUR)
    assert supervisor.check(NOW + 30 * HOUR).drafts == [], "held back while the bridge is away"
    supervisor.set_deaf("link", True, NOW + 30 * HOUR)
    assert supervisor.set_deaf("bridge", False, NOW + 31 * HOUR).drafts == []
    assert supervisor.deaf and supervisor.deaf_link
    supervisor.set_deaf("link", False, NOW + 32 * HOUR)
    # Heard at 0, deaf from 1 h to 32 h: 1 h of audible silence so far, 1.5 h to go.
    assert supervisor.check(NOW + timedelta(hours=33.4)).drafts == []
    assert [d.type for d in supervisor.check(NOW + timedelta(hours=33.5)).drafts] == [
        "technical.device_silent"
    ]


def test_an_offline_seen_while_the_bridge_is_away_is_raised_when_it_returns() -> None:
    supervisor = Supervisor(KIT, PROFILES)
    supervisor.load({}, NOW, fresh=True)
    radar = KIT[2]
    assert supervisor.availability(radar, True, NOW).drafts == []
    supervisor.set_deaf("bridge", True, NOW)
    held = supervisor.availability(radar, False, NOW)
    assert held.drafts == [] and held.writes, "observed offline is remembered"
    back = supervisor.set_deaf("bridge", False, NOW + HOUR)
    assert [(d.type, d.priority) for d in back.drafts] == [("technical.device_offline", 2)]


def test_reports_write_at_most_once_a_minute_unless_something_changed() -> None:
    supervisor = Supervisor(KIT[:1], PROFILES)
    supervisor.load({}, NOW, fresh=True)
    smoke = KIT[0]
    assert supervisor.heard(smoke, {"battery": 80, "linkquality": 60}, NOW).writes
    quiet = supervisor.heard(smoke, {"battery": 80, "linkquality": 61}, NOW + timedelta(seconds=5))
    assert quiet.writes == []
    changed = supervisor.heard(smoke, {"battery": 79}, NOW + timedelta(seconds=6))
    assert changed.writes, "a new battery value is written at once"
    later = supervisor.heard(smoke, {"linkquality": 62}, NOW + timedelta(minutes=2))
    assert later.writes
    assert supervisor.check(NOW + timedelta(minutes=3)).writes == []


def test_a_new_allow_list_drops_removed_devices() -> None:
    supervisor = Supervisor(KIT, PROFILES)
    stored = {d.friendly_name: DeviceHealth(device=d.friendly_name, updated_at=NOW) for d in KIT}
    supervisor.set_devices(KIT[:1])
    outcome = supervisor.load(stored, NOW, fresh=False)
    assert supervisor.state("hall/door") is None
    assert any(getattr(w, "func", None).__name__ == "forget_health" for w in outcome.writes)  # type: ignore[union-attr]


def test_a_refused_raise_or_clear_is_made_again() -> None:
    supervisor = Supervisor(KIT[:1], PROFILES)
    supervisor.load({}, NOW, fresh=True)
    raised = supervisor.check(NOW + 3 * HOUR).drafts
    supervisor.revert(raised)  # the outbox refused it
    assert [d.type for d in supervisor.check(NOW + 3 * HOUR).drafts] == ["technical.device_silent"]
    cleared = supervisor.heard(KIT[0], {"battery": 80}, NOW + 4 * HOUR)
    assert [d.type for d in cleared.drafts] == ["technical.device_silent_cleared"]
    supervisor.revert(cleared.drafts)
    again = supervisor.heard(KIT[0], {"battery": 80}, NOW + 4 * HOUR)
    assert [d.type for d in again.drafts] == ["technical.device_silent_cleared"]
    assert again.writes, "the row is written again too"


RECORDED = Path(__file__).parents[1] / "firmware_profiles" / "payloads"


def recorded_messages() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(RECORDED.glob("*.json")):
        if path.name == "bridge_devices.json":
            continue
        recorded = json.loads(path.read_text(encoding="utf-8"))
        for sequence in recorded["sequences"]:
            found += [(recorded["profile"], step["message"]) for step in sequence["steps"]]
    return found


@pytest.mark.parametrize(("profile_id", "message"), recorded_messages())
def test_the_sign_reader_judges_as_device_health_does(
    profile_id: str, message: dict[str, Any]
) -> None:
    profile = PROFILES[profile_id]
    reader = SignReader(profile)
    signs = reader.read(message)
    health = device_health(profile, message)
    assert (
        signs.battery,
        reader.battery_low(signs),
        signs.linkquality,
        reader.link_poor(signs),
        signs.tamper,
    ) == (
        health.battery_percent,
        health.battery_low,
        health.linkquality,
        health.link_poor,
        health.tamper,
    )
