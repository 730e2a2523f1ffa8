"""What every benchmark records and how it writes its results (one place, same JSON shape)."""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from radview.io.atomic import write_bytes_atomically

__all__ = ["package_versions", "machine_info", "target", "write_results", "print_failures",
           "publish"]


def package_versions(*distributions: str) -> dict[str, str | None]:
    """Python's and each distribution's version (None when it is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in distributions:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info(busy_seconds: float = 1.0) -> dict:
    """The machine, and how busy it was at the start: other work skews wall-clock numbers."""
    import psutil

    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpu_model = next((line.split(":", 1)[1].strip() for line in handle
                              if line.startswith("model name")), "")
    except OSError:
        cpu_model = platform.processor()  # not Linux: a coarser description
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "qt_platform": os.environ.get("QT_QPA_PLATFORM", ""),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cpu_busy_percent_at_start": psutil.cpu_percent(interval=busy_seconds),
    }


def target(value, limit, passed: bool | None, description: str) -> dict:
    """One target's verdict as the JSON records it (``passed`` None: could not be measured)."""
    return {"value": value, "limit": limit, "pass": passed, "description": description}


def verdict_lines(results: dict) -> list[str]:
    """One PASS/FAIL/n/a line per target, then a note when the machine was busy at the start."""
    lines = []
    for name, outcome in results["targets"].items():
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[outcome["pass"]]
        lines.append(f"  {verdict}  {name}: {outcome['value']} (limit {outcome['limit']})")
    busy = results["machine"]["cpu_busy_percent_at_start"]
    if busy > 10:
        lines.append(f"note: the machine was {busy:.0f}% busy before the run; timings are noisy")
    return lines


def write_results(results: dict, out: Path) -> None:
    """The results as indented JSON, written atomically (a crash leaves the old file)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(out, (json.dumps(results, indent=2) + "\n").encode("utf-8"),
                           fsync=False)


def print_failures(results: dict) -> None:
    """FAIL lines for missed targets; the exit status stays 0 (the JSON holds the verdict)."""
    failed = [name for name, t in results.get("targets", {}).items() if t.get("pass") is False]
    if failed:
        print(f"FAIL: {len(failed)} target(s) not met: {', '.join(failed)}", flush=True)


def publish(results: dict, out: Path, summary: str) -> None:
    """Write the JSON, print the human summary, where it went, and any missed targets."""
    write_results(results, out)
    print(summary)
    print(f"results written to {out}")
    print_failures(results)
