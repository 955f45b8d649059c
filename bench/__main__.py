"""Run every benchmark in bench/ (each ``bench_*.py`` as its own process), show what each
prints, then one table of every figure they reported (see bench/report.py and
bench/README.md). ``python -m bench [NAME...]`` runs only the named ones."""

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import unwind_on_sigterm
from bench.report import parse

HERE = Path(__file__).resolve().parent

# The figures the table always lists, in this order; anything else reported follows.
WANTED = (
    "database commit p50",
    "database commit p99",
    "database commit max",
    "job start lateness p50",
    "job start lateness p99",
    "event-to-strike latency p50",
    "event-to-strike latency p99",
    "daemon CPU at 50 containers",
    "daemon RSS at 50 containers",
    "daemon CPU at 200 containers",
    "daemon RSS at 200 containers",
    "cleanup rows/s",
    "digest seconds at 1,000,000 events",
    "outbox delivery throughput",
    "soak RSS growth after warm-up",
    "soak threads after warm-up",
    "soak connections (max)",
    "soak containers flapping",
    "soak rows past retention",
    "soak back-dated rows, last quarter / first",
    "failover sync: primary death to both daemons writing",
    "failover sync: aegis rows lost (events, runs, outbox)",
    "failover async: aegis rows lost (events, runs, outbox)",
)

LAST = ("bench_soak",)


def run_one(script: Path) -> tuple[int, list[dict[str, Any]]]:
    print(f"== {script.stem}", flush=True)
    process = subprocess.Popen([sys.executable, "-m", f"bench.{script.stem}"],
                               cwd=HERE.parent, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    figures: list[dict[str, Any]] = []
    try:
        for line in process.stdout:
            report = parse(line)
            if report is None:
                print(line, end="", flush=True)
                continue
            for figure in report.get("figures", []):  # type: ignore[attr-defined]
                figures.append({**figure, "bench": report.get("bench", script.stem)})
        return process.wait(), figures
    except KeyboardInterrupt:  # Ctrl-C reached the benchmark too: let it clean up
        process.wait(120)
        raise
    except SystemExit:  # our SIGTERM: pass it on, and let the benchmark clean up
        process.terminate()
        process.wait(120)
        raise


def _value(figure: dict[str, Any]) -> str:
    value = figure.get("value")
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{text} {figure.get('unit', '')}".strip()


def table(figures: list[dict[str, Any]], failed: list[str]) -> str:
    by_name = {f["figure"]: f for f in figures}
    names = list(WANTED) + [f["figure"] for f in figures if f["figure"] not in WANTED]
    rows = [("figure", "value", "goal", "verdict", "bench")]
    for name in names:
        figure = by_name.get(name)
        if figure is None:
            rows.append((name, "not measured", "", "", ""))
            continue
        ok = figure.get("ok")
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        rows.append((name, _value(figure), figure.get("goal", ""), verdict, figure["bench"]))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if failed:
        lines.append(f"failed: {', '.join(failed)}")
    return "\n".join(lines)


def main(names: list[str]) -> int:
    # the hour-long soak last, so the other figures are taken first and on a quiet machine
    scripts = sorted(HERE.glob("bench_*.py"), key=lambda s: (s.stem in LAST, s.stem))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names
                   or s.stem in names]
    failed: list[str] = []
    figures: list[dict[str, Any]] = []
    unwind_on_sigterm()  # ends the benchmark running now (it cleans up), then us
    for script in scripts:
        code, reported = run_one(script)
        figures += reported
        if code != 0:
            failed.append(script.stem)
    print()
    print(table(figures, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
