"""Run every benchmark in bench/ (each ``bench_*.py`` as its own process) and print what
each reports. ``python -m bench [NAME...]`` runs only the named ones."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names
                   or s.stem in names]
    failed = 0
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        result = subprocess.run([sys.executable, "-m", f"bench.{script.stem}"],
                                cwd=HERE.parent, check=False)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
