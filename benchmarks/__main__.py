"""Run benchmark modules: ``python -m benchmarks [--list] [MODULE [ARGS...]] ...``.

With no argument every module runs with its defaults. ``python -m benchmarks stats_sim --quick``
runs one module and hands it the arguments that follow its name, up to the next module name.
Each module (a ``benchmarks/<name>.py`` file or a ``benchmarks/<name>/`` package) exposes
``main(argv: list[str] | None)``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    """Benchmark module names found next to this file."""
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def _plan(argv: list[str], names: list[str]) -> list[tuple[str, list[str]]]:
    runs: list[tuple[str, list[str]]] = []
    for arg in argv:
        if arg in names:
            runs.append((arg, []))
        elif runs:
            runs[-1][1].append(arg)
        else:
            raise SystemExit(f"unknown benchmark {arg!r}; available: {', '.join(names)}")
    return runs or [(n, []) for n in names]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    names = available()
    if args[:1] == ["--list"]:
        print("\n".join(names))
        return
    for name, rest in _plan(args, names):
        print(f"=== benchmarks.{name} {' '.join(rest)}".rstrip(), flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        module.main(rest)


if __name__ == "__main__":
    main()
