"""The one line every benchmark ends with, so ``python -m bench`` can print one table:

    BENCH {"bench": "lateness", "figures": [{"figure": "job start lateness p50",
           "value": 3.2, "unit": "ms", "goal": "", "ok": null}, ...]}

``ok`` is true or false when the figure has a goal, null when it is context.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

PREFIX = "BENCH "


@dataclass(frozen=True)
class Figure:
    figure: str
    value: float | None
    unit: str
    goal: str = ""
    ok: bool | None = None


def report(bench: str, figures: list[Figure]) -> None:
    print(PREFIX + json.dumps({"bench": bench, "figures": [asdict(f) for f in figures]}),
          flush=True)


def parse(line: str) -> dict[str, object] | None:
    if not line.startswith(PREFIX):
        return None
    try:
        data = json.loads(line[len(PREFIX):])
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
