"""Llama Guard 3: the classification prompt, the verdict grammar and parser, and category mappings."""

from __future__ import annotations

import re
from dataclasses import dataclass

CATEGORIES = {
    "S1": "Violent Crimes", "S2": "Non-Violent Crimes", "S3": "Sex Crimes", "S4": "Child Sexual Exploitation",
    "S5": "Defamation", "S6": "Specialized Advice", "S7": "Privacy", "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons", "S10": "Hate", "S11": "Suicide & Self-Harm", "S12": "Sexual Content",
    "S13": "Elections", "S14": "Code Interpreter Abuse",
}
# OpenAI moderation categories each Llama Guard category implies
OPENAI_CATEGORIES = {
    "S1": ["violence", "illicit/violent"], "S2": ["illicit"], "S3": ["sexual"], "S4": ["sexual/minors"],
    "S5": ["harassment"], "S6": [], "S7": [], "S8": [], "S9": ["violence", "illicit/violent"],
    "S10": ["hate"], "S11": ["self-harm"], "S12": ["sexual"], "S13": [], "S14": ["illicit"],
}
OPENAI_KEYS = ["harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
               "self-harm", "self-harm/instructions", "self-harm/intent", "sexual", "sexual/minors", "violence",
               "violence/graphic"]
USER_MESSAGE = "I can't answer that. Can I help with something else?"
VERDICT_REGEX = r"safe|unsafe\nS(1[0-4]|[1-9])(,S(1[0-4]|[1-9]))*"

_VERDICT = re.compile(r"^\s*(safe|unsafe)\s*(?:\n\s*(S\d{1,2}(?:\s*,\s*S\d{1,2})*))?\s*$")


def category_codes(model_id: str) -> list[str]:
    """S14 (code interpreter abuse) exists only in Llama Guard 3 models trained with it (the 8B, not the 1B)."""
    codes = list(CATEGORIES)
    if "1b" in model_id.lower():
        codes.remove("S14")
    return codes


def build_prompt(messages: list[dict[str, str]], codes: list[str], excluded: list[str] | None = None) -> str:
    """The Llama Guard 3 task prompt assessing the last message (user turn -> 'User', assistant -> 'Agent')."""
    excluded = set(excluded or [])
    role = "Agent" if messages[-1]["role"] == "assistant" else "User"
    cats = "\n".join(f"{c}: {CATEGORIES[c]}." for c in codes if c not in excluded)
    convo = "\n\n".join(f"{'Agent' if m['role'] == 'assistant' else 'User'}: {m['content']}" for m in messages)
    return (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations according our safety policy "
        "with the below categories.\n\n"
        f"<BEGIN UNSAFE CONTENT CATEGORIES>\n{cats}\n<END UNSAFE CONTENT CATEGORIES>\n\n"
        f"<BEGIN CONVERSATION>\n\n{convo}\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
    )


@dataclass
class Verdict:
    safe: bool
    categories: list[str]


class VerdictError(ValueError):
    pass


def parse_verdict(text: str, allowed: list[str], excluded: list[str] | None = None) -> Verdict:
    """'safe' or 'unsafe\\nS1,S10' -> Verdict. Excluded categories are dropped (all dropped -> safe)."""
    m = _VERDICT.match(text)
    if not m:
        raise VerdictError(f"unparseable Llama Guard verdict {text!r}")
    if m.group(1) == "safe":
        return Verdict(True, [])
    codes = [c.strip() for c in (m.group(2) or "").split(",") if c.strip()]
    unknown = [c for c in codes if c not in allowed]
    if unknown:
        raise VerdictError(f"verdict names unknown categories {unknown}")
    codes = [c for c in dict.fromkeys(codes) if c not in set(excluded or [])]
    return Verdict(not codes, codes)
