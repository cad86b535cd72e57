"""Test counts from what the runner left behind: JUnit XML when written, else its summary line."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CountsSource = Literal["junit", "summary", "none"]

# "3 passed", "1 failed", "2 skipped", "1 error", "4 errors"; pytest, jest ("Tests: 1 failed, 3 passed")
# and mocha ("3 passing", "1 failing", "2 pending") all say it this way.
_COUNT = re.compile(r"(\d+)\s+(passed|passing|failed|failing|skipped|pending|errors?|xfailed|xpassed)\b")
_KIND = {
    "passed": "passed",
    "passing": "passed",
    "xpassed": "passed",
    "failed": "failed",
    "failing": "failed",
    "skipped": "skipped",
    "pending": "skipped",
    "xfailed": "skipped",
    "error": "errors",
    "errors": "errors",
}


@dataclass(frozen=True)
class TestCounts:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    errors: int = 0
    source: CountsSource = "none"
    # `classname::name` of the failing or erroring cases (JUnit only), at most MAX_FAILED_NAMES.
    failed_tests: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped + self.errors


MAX_FAILED_NAMES = 50


def counts_from_junit(path: Path) -> TestCounts | None:
    """Counts from a JUnit XML report (`<testsuites>` or one `<testsuite>`); None if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None
    cases = list(root.iter("testcase"))
    if not cases:
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        if not suites:
            return None
        # Suites without cases still carry attributes; errors at collection time show up this way.
        total = sum(int(s.get("tests", 0)) for s in suites)
        failed = sum(int(s.get("failures", 0)) for s in suites)
        errors = sum(int(s.get("errors", 0)) for s in suites)
        skipped = sum(int(s.get("skipped", 0)) for s in suites)
        passed = max(0, total - failed - errors - skipped)
        return TestCounts(passed, failed, skipped, errors, "junit")
    passed = failed = skipped = errors = 0
    names: list[str] = []
    for case in cases:
        if case.find("failure") is not None:
            failed += 1
        elif case.find("error") is not None:
            errors += 1
        elif case.find("skipped") is not None:
            skipped += 1
            continue
        else:
            passed += 1
            continue
        if len(names) < MAX_FAILED_NAMES:
            names.append("::".join(part for part in (case.get("classname"), case.get("name")) if part))
    return TestCounts(passed, failed, skipped, errors, "junit", tuple(names))


def counts_from_summary(log_text: str) -> TestCounts | None:
    """Counts from the last summary in the log: its last line that reads like one, joined with the
    lines right above it that do too and count other things (mocha puts `3 passing` and `1 failing`
    on lines of their own)."""
    lines = log_text.splitlines()
    for index in range(len(lines) - 1, -1, -1):
        found = _COUNT.findall(lines[index])
        if not found:
            continue
        totals = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
        seen: set[str] = set()
        while found and not seen & {_KIND[word] for _, word in found}:
            for number, word in found:
                totals[_KIND[word]] += int(number)
            seen |= {_KIND[word] for _, word in found}
            index -= 1
            found = _COUNT.findall(lines[index]) if index >= 0 else []
        return TestCounts(**totals, source="summary")
    return None
