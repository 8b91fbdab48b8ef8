"""Profile files: errors name the file, line and field; a site's own override by id."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from firmware_profiles.loader import (
    MAX_PROFILE_BYTES,
    SHIPPED_DIR,
    ProfileError,
    load_profile_file,
    load_profiles,
    parse_profile_text,
)
from firmware_profiles.schema import ActionRule, BinaryReading

SHIPPED = set(load_profiles())
DOOR_TEXT = (SHIPPED_DIR / "aqara_mccgq11lm.yaml").read_text(encoding="utf-8")

FIRST_FORMAT = """\
# The format before readings and supervision existed: it must keep loading.
id: acme.DOOR1
vendor: Acme
model: DOOR1
description: Acme door contact
transport: zigbee2mqtt
fingerprint:
  model: DOOR1
  vendor: Acme
  model_id: acme.door.v1
power_source: battery
check_in_interval_s: 3600
events:
  - kind: edge
    property: contact
    to: false
    type: activity.door_opened
    class: activity
    vkp_alert_code: "4.15"
  - kind: action
    property: action
    values: [single]
    type: alarm.button
    class: alarm
    priority: 1
    vkp_alert_code: "3"
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the n-th line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[occurrence - 1]


def only_problem(text: str) -> tuple[int | None, str, str]:
    with pytest.raises(ProfileError) as refused:
        parse_profile_text(text, "site/door.yaml")
    (problem,) = refused.value.problems
    where = "site/door.yaml" if problem.line is None else f"site/door.yaml:{problem.line}"
    assert str(refused.value) == f"{where}: {problem.field}: {problem.message}"
    return problem.line, problem.field, problem.message


# --- file, line and field --------------------------------------------------------------------


def test_a_wrong_value_deep_in_a_rule_names_its_line_and_field() -> None:
    text = DOOR_TEXT.replace("to: true", "to: sometimes")
    line, field, message = only_problem(text)
    assert (line, field) == (line_of(text, "to: sometimes"), "events[1].to")
    assert "boolean" in message


def test_an_unknown_key_names_its_own_line() -> None:
    text = DOOR_TEXT.replace("power_source: battery", "power_source: battery\ncolour: red")
    assert only_problem(text) == (
        line_of(text, "colour:"),
        "colour",
        "Extra inputs are not permitted",
    )


def test_a_missing_field_names_the_mapping_it_is_missing_from() -> None:
    text = DOOR_TEXT.replace("  check_in_interval_s: 3600\n", "")
    line, field, message = only_problem(text)
    assert (line, field, message) == (
        line_of(text, "  offline_priority:"),
        "supervision.check_in_interval_s",
        "Field required",
    )


def test_a_rule_level_error_names_the_rule() -> None:
    text = DOOR_TEXT.replace("type: activity.door_closed", "type: alarm.door_closed")
    line, field, message = only_problem(text)
    assert (line, field) == (line_of(text, "- kind: edge", 2), "events[1]")
    assert message == "type 'alarm.door_closed' does not belong to class 'activity'"


def test_an_unquoted_yaml_date_is_not_taken_for_a_firmware_string() -> None:
    text = DOOR_TEXT.replace(
        "power_source: battery", "firmware:\n  min_date_code: 2018-01-30\npower_source: battery"
    )
    line, field, message = only_problem(text)
    assert (line, field) == (line_of(text, "min_date_code"), "firmware.min_date_code")
    assert "string" in message


def test_an_unquoted_on_in_an_enum_is_caught() -> None:
    """YAML 1.1 reads ON as true; the tumble switch values must be quoted."""
    radar = (SHIPPED_DIR / "tuya_mir_he200_ty_fall.yaml").read_text(encoding="utf-8")
    text = radar.replace('values: ["ON", "OFF"]', "values: [ON, OFF]", 1)
    with pytest.raises(ProfileError) as refused:
        parse_profile_text(text, "radar.yaml")
    fields = {p.field for p in refused.value.problems}
    assert fields >= {"readings[3].values[0]", "readings[3].values[1]"}
    assert {p.line for p in refused.value.problems} == {line_of(text, "values: [ON, OFF]")}


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("id: [unclosed\n", 2, "(yaml)", "expected ',' or ']', but got '<stream end>'"),
        ("", None, "(profile)", "the file is empty"),
        ("- 1\n- 2\n", 1, "(profile)", "a profile must be a YAML mapping"),
        ("id: a.B\nvendor: x\nid: c.D\n", 3, "id", "key given twice"),
        ("a: &x [1]\nb: *x\n", 1, "(yaml)", "aliases are not allowed in a profile"),
    ],
)
def test_yaml_problems_are_located_too(
    text: str, line: int | None, field: str, message: str
) -> None:
    assert only_problem(text) == (line, field, message)


def test_every_problem_of_a_file_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(DOOR_TEXT.replace("to: false", "to: 2").replace("to: true", "to: 3"))
    with pytest.raises(ProfileError) as refused:
        load_profile_file(path)
    assert [p.field for p in refused.value.problems] == ["events[0].to", "events[1].to"]
    assert str(refused.value).splitlines()[0].startswith(f"{path}:")


def test_unreadable_files_are_profile_errors(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text("#" * (MAX_PROFILE_BYTES + 1))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"id: \xff\xfe\n")
    for path, message in [
        (huge, "larger than"),
        (binary, "cannot read"),
        (tmp_path / "gone.yaml", "cannot read"),
    ]:
        with pytest.raises(ProfileError, match=message):
            load_profile_file(path)


def test_the_first_format_still_loads() -> None:
    profile = parse_profile_text(FIRST_FORMAT, "old.yaml")
    assert profile.supervision.check_in_interval_s == 3600
    assert isinstance(profile.reading("contact"), BinaryReading)
    assert profile.state_properties == {"contact"}
    both = FIRST_FORMAT + "supervision:\n  check_in_interval_s: 60\n"
    _, _, message = only_problem(both)
    assert message == "check_in_interval_s is given both at the top and in supervision"


# --- site-local profiles -----------------------------------------------------------------------


def shipped_raw(name: str) -> dict[str, Any]:
    raw = yaml.safe_load((SHIPPED_DIR / name).read_text())
    assert isinstance(raw, dict)
    return raw


def test_a_site_profile_overrides_the_shipped_one(tmp_path: Path) -> None:
    raw = shipped_raw("aqara_wxkg11lm.yaml")
    raw["events"] = [{**raw["events"][0], "values": ["single", "double", "hold", "triple"]}]
    (tmp_path / "button.yaml").write_text(yaml.safe_dump(raw))
    profiles = load_profiles(tmp_path)
    (press,) = profiles["aqara.WXKG11LM"].events
    assert isinstance(press, ActionRule)
    assert "triple" in press.values
    assert set(profiles) == SHIPPED


def test_a_site_profile_adds_a_new_model(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(FIRST_FORMAT)
    assert set(load_profiles(tmp_path)) == SHIPPED | {"acme.DOOR1"}


def test_a_broken_site_file_is_logged_with_its_line_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "broken.yaml").write_text("id: [unclosed\n")
    (tmp_path / "invalid.yaml").write_text(yaml.safe_dump({"id": "x.Y", "vendor": "x"}))
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "wrong.yaml").write_text(DOOR_TEXT.replace("to: true", "to: sometimes"))
    with caplog.at_level(logging.ERROR):
        profiles = load_profiles(tmp_path)
    assert set(profiles) == SHIPPED
    skipped = [r.getMessage() for r in caplog.records if "site profile skipped" in r.getMessage()]
    assert len(skipped) == 4
    wrong = next(m for m in skipped if "wrong.yaml" in m)
    assert f"wrong.yaml:{line_of(DOOR_TEXT, 'to: true')}: events[1].to:" in wrong


def test_a_missing_site_directory_keeps_the_shipped_profiles(tmp_path: Path) -> None:
    assert set(load_profiles(tmp_path / "nowhere")) == SHIPPED
