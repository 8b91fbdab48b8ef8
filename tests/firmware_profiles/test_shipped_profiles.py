"""The one generic test over every shipped profile (Z2M's checkDefinition, EdgeX validation).

A new profile file is covered the moment it lands in ``firmware_profiles/zigbee/``.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

from firmware_profiles.loader import SHIPPED_DIR, load_profile_file, load_profiles
from firmware_profiles.schema import (
    SCHEMA_PATH,
    STANDARD_READINGS,
    ActionRule,
    EdgeRule,
    EnumRule,
    Profile,
    ThresholdRule,
    json_schema_text,
)
from firmware_profiles.vkp import VKP_ALERT_CODES

PAYLOADS = Path(__file__).parent / "payloads"
Z2M_PASSIVE_DEFAULT = timedelta(hours=25)
SCHEMA_COMMENT = "# yaml-language-server: $schema=../profile.schema.json"
SILENT_IS_AN_ALARM = {"smoke", "fall_radar", "button"}
"""Categories whose silence opens an alarm at the centre (offline priority 2)."""


def _problems(path: Path, profile: Profile) -> list[str]:
    found: list[str] = []
    where = f"{path.name} ({profile.id})"

    def check(ok: bool, what: str) -> None:
        if not ok:
            found.append(f"{where}: {what}")

    text = path.read_text(encoding="utf-8")
    check(text.startswith(SCHEMA_COMMENT), "does not point editors at the JSON Schema")
    check(profile.category != "other", "has no category")
    check(bool(profile.description), "has no description")
    check(bool(profile.events), "raises nothing")
    check(profile.fingerprint.model == profile.model, "fingerprint model is not the model")
    check((PAYLOADS / f"{path.stem}.json").is_file(), "has no recorded payloads")
    declared = {r.prop for r in profile.readings}
    for rule in profile.events:
        check(rule.prop in declared, f"rule on {rule.prop} has no declared reading")
        codes = [rule.vkp_alert_code]
        if isinstance(rule, ThresholdRule):
            codes.append(rule.clear_vkp_alert_code)
        for code in codes:
            check(code is None or code in VKP_ALERT_CODES, f"{rule.type}: VKP code {code}")
        if rule.event_class == "alarm":
            check(rule.effective_priority <= 2, f"{rule.type}: alarm priority above 2")
            if isinstance(rule, EdgeRule | EnumRule | ThresholdRule):
                check(rule.on_first == "raise", f"{rule.type}: a first report would be lost")
        if isinstance(rule, ActionRule):
            check(rule.event_class != "measurement", f"{rule.type}: an action is no measurement")
    for name in profile.data_properties:
        check(
            name in declared or name in STANDARD_READINGS,
            f"data property {name} is not checked by a reading",
        )
    supervision = profile.supervision
    silent_alarm = profile.category in SILENT_IS_AN_ALARM
    check(
        supervision.offline_priority == (2 if silent_alarm else 3),
        f"offline priority {supervision.offline_priority}",
    )
    if profile.power_source == "battery":
        check(supervision.liveness == "reports", "a sleepy device cannot be pinged")
        check(
            supervision.battery_low_property is not None
            or supervision.battery_low_percent is not None,
            "no way to tell its battery is low",
        )
        check(
            supervision.offline_after < Z2M_PASSIVE_DEFAULT,
            f"offline only after {supervision.offline_after}: no better than Z2M's 25 h",
        )
    else:
        check(supervision.liveness == "availability", "a mains router is pinged by Z2M")
        check(supervision.check_in_interval_s <= 600, "Z2M's active timeout is 10 minutes")
    return found


def _overlap(a: Profile, b: Profile) -> bool:
    """Could one ``bridge/devices`` entry match both fingerprints?"""
    fa, fb = a.fingerprint, b.fingerprint
    if fa.model == fb.model and fa.vendors & fb.vendors:
        return True
    if not set(fa.model_id) & set(fb.model_id):
        return False
    return (
        not fa.manufacturer
        or not fb.manufacturer
        or bool(set(fa.manufacturer) & set(fb.manufacturer))
    )


def test_every_shipped_profile() -> None:
    paths = sorted(SHIPPED_DIR.glob("*.yaml"))
    assert len(paths) >= 8
    profiles = [(path, load_profile_file(path)) for path in paths]
    problems = [p for path, profile in profiles for p in _problems(path, profile)]

    ids = [profile.id for _, profile in profiles]
    if len(set(ids)) != len(ids):
        problems.append(f"profile ids shipped twice: {sorted(ids)}")
    assert set(load_profiles()) == set(ids)
    for (pa, a), (pb, b) in itertools.combinations(profiles, 2):
        if _overlap(a, b):
            problems.append(f"{pa.name} and {pb.name} have overlapping fingerprints")

    if SCHEMA_PATH.read_text(encoding="utf-8") != json_schema_text():
        problems.append("profile.schema.json is stale: run python -m firmware_profiles.schema")
    assert problems == []


def test_the_kit_is_complete() -> None:
    """The municipality's standard kit (issue #3): which device raises what."""
    profiles = load_profiles()
    alarms = {
        rule.type for p in profiles.values() for rule in p.events if rule.event_class == "alarm"
    }
    assert alarms == {"alarm.button", "alarm.fall", "alarm.smoke", "alarm.water_leak"}
    categories = {p.category for p in profiles.values()}
    assert categories >= {
        "button",
        "door",
        "motion",
        "water_leak",
        "smoke",
        "bed_chair",
        "fall_radar",
        "stove_guard",
    }
