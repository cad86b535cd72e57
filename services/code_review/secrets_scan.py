"""Secrets on added lines: known token formats, private key blocks, and high-entropy strings."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from services.code_review.models import Finding, Severity


@dataclass(frozen=True)
class SecretPattern:
    rule: str
    description: str
    regex: re.Pattern[str]
    severity: Severity = "error"


# Known formats: a match is a secret with near certainty, so it blocks the change.
KNOWN_PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern("aws-access-key-id", "AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    SecretPattern(
        "aws-secret-access-key",
        "AWS secret access key",
        re.compile(r"(?i)aws.{0,20}?(?:secret|sk).{0,20}?[\"'`:= ]+([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])"),
    ),
    SecretPattern(
        "github-token", "GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{22,})")
    ),
    SecretPattern("slack-token", "Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    SecretPattern(
        "slack-webhook",
        "Slack webhook URL",
        re.compile(r"https://hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]+"),
    ),
    SecretPattern(
        "private-key",
        "private key block",
        re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY(?: BLOCK)?-----"),
    ),
    SecretPattern(
        "hardcoded-password",
        "hard-coded password or secret",
        re.compile(
            r"(?i)\w*(?:password|passwd|pwd|secret|api_?key|auth_?token|access_?token)\w*[\"']?"
            r"(?:\s*:\s*[\w\[\]|. ]+?)?\s*[:=]\s*"  # an optional annotation, then = or :
            r"[\"']([^\"'\s]{4,})[\"']"
        ),
    ),
)
# Values that look like a password assignment but are obviously not real secrets.
_PLACEHOLDERS = re.compile(r"(?i)^(?:x+|\*+|\.+|changeme|change-me|password|secret|example\w*|dummy|test\w*|"
                           r"<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|%\([^)]*\)s|your[-_]\w*)$")  # fmt: skip

# High entropy: quoted strings of base64 or hex alphabet, thresholds as in truffleHog.
_QUOTED = re.compile(r"[\"']([A-Za-z0-9+/=_\-]{20,})[\"']")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
BASE64_ENTROPY_THRESHOLD = 4.5
HEX_ENTROPY_THRESHOLD = 3.0
HEX_MIN_LENGTH = 32
# Files full of hashes by design.
_SKIPPED_FILES = re.compile(r"(?:^|/)(?:uv\.lock|poetry\.lock|Pipfile\.lock|package-lock\.json|yarn\.lock|"
                            r"pnpm-lock\.yaml|Cargo\.lock|go\.sum|.*\.min\.js)$")  # fmt: skip


def shannon_entropy(text: str) -> float:
    """Bits per character."""
    if not text:
        return 0.0
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def redact(value: str) -> str:
    """Enough of a secret to find it, not enough to use it."""
    return f"{value[:4]}…({len(value)} chars)"


def scan_line(path: str, line_no: int, text: str) -> list[Finding]:
    findings: list[Finding] = []
    claimed: list[tuple[int, int]] = []  # spans already reported by a known pattern
    for pattern in KNOWN_PATTERNS:
        for match in pattern.regex.finditer(text):
            value = match.group(match.lastindex or 0)
            if pattern.rule == "hardcoded-password" and _PLACEHOLDERS.match(value):
                continue
            if _overlaps(match.span(), claimed):
                continue
            claimed.append(match.span())
            findings.append(
                _finding(path, line_no, pattern.rule, pattern.severity, pattern.description, value)
            )
    for match in _QUOTED.finditer(text):
        if _overlaps(match.span(1), claimed):
            continue
        value = match.group(1)
        is_hex = bool(_HEX.match(value))
        if is_hex and len(value) >= HEX_MIN_LENGTH and shannon_entropy(value) > HEX_ENTROPY_THRESHOLD:
            rule, entropy = "high-entropy-hex", shannon_entropy(value)
        elif not is_hex and shannon_entropy(value) > BASE64_ENTROPY_THRESHOLD:
            rule, entropy = "high-entropy-string", shannon_entropy(value)
        else:
            continue
        findings.append(
            _finding(
                path, line_no, rule, "warning", f"possible secret (entropy {entropy:.2f} bits/char)", value
            )
        )
    return findings


def scan_added_lines(path: str, text: str, lines: set[int]) -> list[Finding]:
    """Findings on the given (1-based) lines of a file's new text."""
    if _SKIPPED_FILES.search(path):
        return []
    findings: list[Finding] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if number in lines:
            findings.extend(scan_line(path, number, line))
    return findings


def _overlaps(span: tuple[int, int], claimed: list[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in claimed)


def _finding(path: str, line: int, rule: str, severity: Severity, description: str, value: str) -> Finding:
    return Finding(
        file=path,
        line=line,
        rule=rule,
        severity=severity,
        category="secret",
        message=f"{description}: {redact(value)}",
    )
