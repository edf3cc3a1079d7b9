"""Code scanner shield: CodeShield's insecure-code detector on code found in messages, offline."""

from __future__ import annotations

import re
from typing import Any

_FENCE = re.compile(r"```[\w+-]*\n(.*?)```", re.S)


def code_blocks(text: str) -> list[str]:
    """Fenced code blocks, or the whole text when it has none (a message may be bare code)."""
    blocks = _FENCE.findall(text)
    return blocks or [text]


async def scan(text: str) -> dict[str, Any] | None:
    """None when clean; else {"issues": [...]} describing what CodeShield found."""
    from codeshield.cs import CodeShield

    issues = []
    for block in code_blocks(text):
        result = await CodeShield.scan_code(block)
        if result.is_insecure:
            for issue in result.issues_found or []:
                issues.append({"cwe_id": getattr(issue, "cwe_id", None),
                               "pattern_id": getattr(issue, "pattern_id", None),
                               "description": getattr(issue, "description", ""),
                               "line": getattr(issue, "line", None),
                               "severity": str(getattr(issue, "severity", ""))})
            if not result.issues_found:
                issues.append({"description": "insecure code", "recommendation": str(result.recommended_treatment)})
    return {"issues": issues} if issues else None
