"""A button press in a home becomes exactly one open, correctly signed alarm at the centre."""

from __future__ import annotations

import json

from drivers.simulators.zigbee_home import ZigbeeHome
from gateway.identity import load_signing_key
from gateway.status import collect_status
from tests.e2e.conftest import Operator, stored_events
from tests.support.wait import eventually
from trygg.localsite import HOME, RESIDENT, LocalSite
from trygg.wire.envelope import verify_event


async def test_button_press_becomes_one_open_alarm_with_a_valid_signature(
    site: LocalSite, home: ZigbeeHome, operator: Operator
) -> None:
    await home.press()

    alarms = await eventually(operator.alarms, what="the alarm at the centre", timeout=20)
    assert len(alarms) == 1
    alarm = alarms[0]
    assert alarm["type"] == "alarm.button"
    assert alarm["state"] == "new"
    assert alarm["vkp_alert_code"] == "3"
    assert alarm["home"]["ref"] == HOME[0]
    assert alarm["resident"]["display_name"] == RESIDENT[1]
    assert alarm["room"] == "bedroom"

    # The event the centre stored verifies against the gateway's own key, byte for byte.
    (row,) = [r for r in stored_events(site) if r.event_id == alarm["event_id"]]
    public_key = load_signing_key(site.gateway_dir).public_key()
    verified = verify_event(json.loads(row.body), row.sig, public_key)
    assert verified.event.type == "alarm.button"
    assert verified.event.gateway_id == alarm["gateway_id"]

    # Once the gateway has its receipt nothing is left to send, and there is still one alarm.
    def settled() -> bool:
        status = collect_status(site.gateway_dir)
        return bool(status.to_json()["outbox"]["depth"] == 0)

    async def outbox_settled() -> bool:
        return settled()

    await eventually(outbox_settled, what="the gateway's outbox to empty", timeout=20)
    assert len(await operator.alarms()) == 1


async def test_door_sensor_reaches_the_centre_as_activity_and_raises_no_alarm(
    site: LocalSite, home: ZigbeeHome, operator: Operator
) -> None:
    await home.close_door()  # the first report only tells the gateway the current state
    await home.open_door()
    await home.close_door()

    def door_types() -> list[str]:
        return [r.type for r in stored_events(site) if r.type.startswith("activity.door")]

    async def probe() -> list[str]:
        return door_types()

    seen = await eventually(probe, lambda t: len(t) >= 2, what="door events", timeout=20)
    assert seen == ["activity.door_opened", "activity.door_closed"]
    assert await operator.alarms() == []


async def test_operator_acknowledges_then_resolves_the_alarm(
    site: LocalSite, home: ZigbeeHome, operator: Operator
) -> None:
    await home.press()
    (alarm,) = await eventually(operator.alarms, what="the alarm", timeout=20)

    acknowledged = await operator.act(alarm["id"], "acknowledge")
    assert acknowledged.status_code == 200, acknowledged.text
    resolved = await operator.act(alarm["id"], "resolve", outcome="false_alarm", note="test")
    assert resolved.status_code == 200, resolved.text

    assert await operator.alarms() == []
    (done,) = await operator.alarms(state="resolved")
    assert done["acknowledged_by"] == "operator" and done["resolved_by"] == "operator"
