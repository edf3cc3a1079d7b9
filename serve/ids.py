"""Object ids as OpenAI's look: a prefix and 24 random hex digits (`file-…`, `resp_…`, `vs_…`)."""

from __future__ import annotations

import uuid


def new_id(prefix: str, sep: str = "_") -> str:
    return f"{prefix}{sep}{uuid.uuid4().hex[:24]}"
