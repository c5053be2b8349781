"""What every benchmark prints and writes: the machine it ran on and its section of docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path


def say(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    print(f"  · {message}", file=sys.stderr, flush=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def write_section(path: Path, name: str, text: str) -> None:
    """Replace this benchmark's section of the markdown file (other sections stay)."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n_Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC._\n\n{text}{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + f"\n\n## {name}\n\n{block}\n"
    path.write_text(current)


def peak_rss_gb(pid: int | str = "self") -> float:
    """A process's peak resident memory (Linux VmHWM), in GB; 0 where /proc does not tell."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return 0.0
