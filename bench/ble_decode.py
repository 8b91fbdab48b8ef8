"""Benchmark: Bluetooth health-characteristic decode throughput, per characteristic type.

Run from the repository root:

    .venv/bin/python -m bench.ble_decode [--frames 20000] [--repeat 5] [--cpu 0]

For each characteristic it decodes a typical frame (the worked examples of
standards.md §3.4 where there is one, otherwise a frame with the usual optional fields)
``--frames`` times, ``--repeat`` runs, and prints the median and spread of decodes per
second. It also times decode plus the mapping to event data for each measurement type,
and the rejection of a truncated frame (the cost of garbage). Pure CPU, one process,
pinned to one CPU by default so the figures mean "on one core".
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.stats import Report, emit, progress
from drivers.ble.blood_pressure import decode_blood_pressure
from drivers.ble.decoders import DECODERS
from drivers.ble.errors import BleParseError
from drivers.ble.events import Measurement, MeasurementDraft, measurement_drafts
from drivers.ble.glucose import decode_glucose
from drivers.ble.pulse_oximeter import decode_plx_continuous, decode_plx_spot_check
from drivers.ble.temperature import decode_temperature
from drivers.ble.weight import decode_weight

TYPICAL: dict[int, str] = {
    0x2A35: "06 7800 5000 5D00 E907030E081E00 4800",
    0x2A36: "00 9600 FF07 FF07",
    0x2A1C: "06 6C0100FF E907030E081E00 02",
    0x2A1D: "02",
    0x2A9D: "0E A438 E907030E081E00 01 F500 D606",
    0x2A9E: "9F010000",
    0x2A18: "1B 0100 E907030E081E00 0000 5FB0 11 0000",
    0x2A34: "07 0100 0132D0 01 51",
    0x2A52: "06 00 01 01",
    0x2A5E: "07 6100 4000 E907030E081E00 8000 000000",
    0x2A5F: "0C 6200 4800 8000 000000",
    0x2A60: "0F00 E0FF FFFF00",
    0x2A08: "E907030E081E00",
    0x2A2B: "E907030E081E00 05 80 02",
    0x2A19: "64",
}
"""Hex as in the test vectors; spaces are for reading."""

TO_EVENTS: dict[str, tuple[Callable[[bytes], Measurement], str]] = {
    "blood pressure 0x2A35": (decode_blood_pressure, TYPICAL[0x2A35]),
    "temperature 0x2A1C": (decode_temperature, TYPICAL[0x2A1C]),
    "weight 0x2A9D": (decode_weight, TYPICAL[0x2A9D]),
    "glucose 0x2A18": (decode_glucose, TYPICAL[0x2A18]),
    "PLX spot-check 0x2A5E": (decode_plx_spot_check, TYPICAL[0x2A5E]),
    "PLX continuous 0x2A5F": (decode_plx_continuous, TYPICAL[0x2A5F]),
}


def _to_events(decode: Callable[[bytes], Measurement], data: bytes) -> list[MeasurementDraft]:
    return measurement_drafts(decode(data))


def _frame(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def _rate(count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(count):
        work()
    return count / (time.perf_counter() - started)


def _rejections(decode: Callable[[bytes], object], data: bytes, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        try:
            decode(data)
        except BleParseError:
            pass
        else:
            raise AssertionError("a truncated frame decoded")
    return count / (time.perf_counter() - started)


def one_run(args: argparse.Namespace, report: Report) -> None:
    count = args.frames
    for uuid, text in TYPICAL.items():
        decoder = DECODERS[uuid]
        data = _frame(text)
        decoder.decode(data)  # fails loudly here if a frame above is wrong
        report.figure(f"decode {decoder.characteristic}", "frames/s").add(
            _rate(count, partial(decoder.decode, data))
        )
    for name, (decode, text) in TO_EVENTS.items():
        data = _frame(text)
        report.figure(f"decode + event data, {name}", "frames/s").add(
            _rate(count, partial(_to_events, decode, data))
        )
    truncated = _frame(TYPICAL[0x2A35])[:-1]
    report.figure("reject a truncated BP frame", "frames/s").add(
        _rejections(DECODERS[0x2A35].decode, truncated, count)
    )


def run(args: argparse.Namespace) -> Report:
    cpu = args.cpu if args.cpu is not None and args.cpu >= 0 else None
    pinned = ""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
        pinned = f", pinned to CPU {cpu}"
    report = Report(f"BLE characteristic decode, pure Python, in process{pinned}")
    try:
        for run_no in range(1, args.repeat + 1):
            one_run(args, report)
            progress(f"ble decode run {run_no} of {args.repeat} done")
    finally:
        if cpu is not None:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
    report.note(f"per run: {args.frames:,} frames of each kind; median over {args.repeat} runs")
    return report


def add_arguments(parse: argparse.ArgumentParser) -> None:
    parse.add_argument("--frames", type=int, default=20_000, help="frames per kind per run")
    parse.add_argument("--repeat", type=int, default=5)
    parse.add_argument("--cpu", type=int, default=0, help="pin to this CPU (-1: do not pin)")
    parse.add_argument("--json", type=Path, default=None, help="also write the figures here")


def main(argv: list[str] | None = None) -> None:
    parse = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add_arguments(parse)
    args = parse.parse_args(argv)
    emit(run(args), args.json)


if __name__ == "__main__":
    main()
