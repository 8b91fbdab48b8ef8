"""``python -m bench``: every benchmark in turn, with its default sizes (about five minutes).

Each one is also a script of its own with flags to scale it up:
``bench.outbox_ingest``, ``bench.alarm_path``, ``bench.center_http``, ``bench.center_ingest``.
``--json DIR`` keeps each table as ``DIR/<name>.json`` too.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

from bench import alarm_path, center_http, outbox_ingest
from bench.stats import Report, emit, progress

Runner = Callable[[argparse.Namespace], Report]
Arguments = Callable[[argparse.ArgumentParser], None]


def _defaults(
    add: Callable[[argparse.ArgumentParser], None], **overrides: object
) -> argparse.Namespace:
    parse = argparse.ArgumentParser()
    add(parse)
    args = parse.parse_args([])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


def main() -> None:
    parse = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parse.add_argument("--json", type=Path, default=None, help="directory for JSON copies")
    parse.add_argument("--dir", type=Path, default=None, help="where the benchmarks' files go")
    options = parse.parse_args()
    alarm_path.quiet_logs()
    modules: list[tuple[str, Runner, Arguments]] = [
        ("outbox_ingest", outbox_ingest.run, outbox_ingest.add_arguments),
        ("alarm_path", alarm_path.run, alarm_path.add_arguments),
        ("center_http", center_http.run, center_http.add_arguments),
    ]
    if options.json is not None:
        options.json.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for name, runner, arguments in modules:
        progress(f"running {name}")
        report = runner(_defaults(arguments, dir=options.dir))
        emit(report, options.json / f"{name}.json" if options.json else None)
    load = os.getloadavg()
    progress(
        f"all benchmarks took {time.perf_counter() - started:.0f} s; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


if __name__ == "__main__":
    main()
