"""Named checks for the end-to-end scripts: each prints PASS or FAIL, and a failure does not
stop the checks after it."""

from __future__ import annotations

import contextlib
import time


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    @contextlib.contextmanager
    def case(self, name: str):
        started = time.monotonic()
        try:
            yield
        except Exception as exc:  # keep going: report every failing check
            self.failed += 1
            print(f"FAIL {name}\n     {type(exc).__name__}: {exc}", flush=True)
        else:
            self.passed += 1
            print(f"PASS {name} ({time.monotonic() - started:.1f} s)", flush=True)
