"""`make bench`: run every benchmark module in support/bench/ one after the other."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import support.bench as bench_package


def main() -> int:
    modules = pkgutil.iter_modules(bench_package.__path__)
    names = sorted(m.name for m in modules if m.name.startswith("bench_"))
    if not names:
        print("no benchmarks found")
        return 1
    for name in names:
        module = importlib.import_module(f"support.bench.{name}")
        if getattr(module, "INCLUDED_IN", None):
            continue  # its figures are part of another benchmark's output: not run twice
        print(f"\n=== {name} ===", flush=True)
        runner = getattr(module, "main", None)
        if runner is None:
            print(f"{name}: no main() — skipped")
            continue
        result = runner()
        if isinstance(result, int) and result != 0:
            return result
    return 0


if __name__ == "__main__":
    sys.exit(main())
