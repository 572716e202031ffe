"""Where the benchmarks keep their scratch files: $BENCH_VAR_DIR, else var/bench/ in the repository, a
folder per benchmark below it. The suite's smoke test (tests/bench/) points BENCH_VAR_DIR into its own
STUDIO_VAR_DIR, so a smoke run, the other test leg and a real `make bench` never share a file."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench_var_dir(*parts: str) -> Path:
    base = Path(os.environ.get("BENCH_VAR_DIR") or ROOT / "var" / "bench")
    return base.joinpath(*parts).resolve()
