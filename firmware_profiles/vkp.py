"""The VKP alert code list (``vkp-alert-code-v090``, standards.md §1.4.1), complete.

DetectedIssue.code has a *required* binding to this list and fhir.resources does not check
bindings, so a profile naming a code that is not here would only fail at the national hub,
long after the alarm. Profiles are checked against it when they load.
"""

from __future__ import annotations

VKP_ALERT_CODES: frozenset[str] = frozenset(
    {
        # 1 Elektronisk medisineringsstøtte (dispenser deviations)
        "1",
        *(f"1.{n}" for n in range(1, 24)),
        # 2 Lokaliseringsteknologi, 3 Trygghetsalarm: no subcodes
        "2",
        "3",
        # 4 Digitalt tilsyn: 4.1 Fall ... 4.26 Planlagt kameratilsyn
        "4",
        *(f"4.{n}" for n in range(1, 27)),
        # 5 Digital hjemmeoppfølging
        "5",
        "5.1",
        "5.2",
        "5.2.1",
        "5.2.2",
        "5.2.3",
        "5.3",
        "5.3.1",
        "5.3.2",
        # 6 Elektronisk dørlås, 7 Sykesignalanlegg
        "6",
        "7",
        "7.1",
    }
)
