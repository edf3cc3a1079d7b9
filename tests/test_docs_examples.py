"""The documentation's examples run as written, and its links lead somewhere.

A fenced code block in README.md or docs/*.md that follows a `<!-- example -->` line is an example: python blocks
run in a fresh interpreter, bash blocks under `bash -e -o pipefail` with curl failing on HTTP errors, against the
main test graph (`base_url`). The docs address http://localhost:8321 (what `make run` serves); the test puts the
graph's URL there, and the test MCP server's in place of the one the docs start on port 9000. Examples run in
document order: a later block may read what an earlier one of the same page made (a trace, a stored file).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = "<!-- example -->"
DOCS_URL = "http://localhost:8321"
DOCS_MCP_URL = "http://127.0.0.1:9000/mcp"
RUNNABLE = ("python", "bash")
# curl as the examples call it, but an HTTP error status fails the block (curl alone exits 0 on a 404)
CURL_FAILS_ON_HTTP_ERRORS = 'curl() { command curl --fail-with-body --silent --show-error "$@"; }\n'


@dataclass(frozen=True)
class Example:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse_examples(page: Path) -> tuple[list[Example], list[str]]:
    """The page's examples, and what is wrong with its markers (a marker without a block of a runnable language)."""
    lines = page.read_text().splitlines()
    found, problems = [], []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        fence = re.fullmatch(r"```(\w+)\s*", lines[j]) if j < len(lines) else None
        if fence is None or fence.group(1) not in RUNNABLE:
            problems.append(f"{page.relative_to(ROOT)}:{i + 1}: {MARKER} must precede a ```python or ```bash block")
            continue
        end = next((k for k in range(j + 1, len(lines)) if lines[k].startswith("```")), None)
        if end is None:
            problems.append(f"{page.relative_to(ROOT)}:{j + 1}: the block never closes")
            continue
        found.append(Example(page, j + 1, fence.group(1), "\n".join(lines[j + 1:end]) + "\n"))
    return found, problems


EXAMPLES = [e for page in PAGES for e in parse_examples(page)[0]]


def test_example_markers_are_well_formed():
    problems = [p for page in PAGES for p in parse_examples(page)[1]]
    assert not problems, "\n".join(problems)
    readme = [e for e in EXAMPLES if e.page.name == "README.md"]
    assert [e.lang for e in readme] == ["python", "python"]  # the chat and the Responses examples
    assert any("chat.completions.create" in e.code for e in readme)
    assert any("responses.create" in e.code for e in readme)


# ---- links ----------------------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _prose(text: str) -> str:
    """The page without fenced blocks and inline code, where brackets and parentheses are code, not links."""
    return re.sub(r"`[^`\n]*`", "", _without_code_blocks(text))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", _without_code_blocks(page.read_text()), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Relative links (and images) of the page whose file, or heading in a markdown file, does not exist."""
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check here
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{page.relative_to(root)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{page.relative_to(root)}: {target} (no such heading)")
    return broken


def test_relative_links_point_to_existing_files():
    assert len(PAGES) > 1  # README.md and docs/
    broken = [b for page in PAGES for b in broken_links(page)]
    assert not broken, "\n".join(broken)


def test_link_check_catches_a_dead_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# A heading, with `code`\n")
    page.write_text("[ok](there.md#a-heading-with-code) [gone](missing.md) [bad anchor](there.md#nope)\n"
                    "`[not a link](nowhere.md)` [web](https://example.com)\n")
    assert broken_links(page, tmp_path) == ["page.md: missing.md (no such file)",
                                            "page.md: there.md#nope (no such heading)"]


# ---- examples against the graph -------------------------------------------------------------------------------

def _run(example: Example, base_url: str, mcp_url: str) -> subprocess.CompletedProcess:
    code = example.code.replace(DOCS_MCP_URL, mcp_url).replace(DOCS_URL, base_url)
    if example.lang == "python":
        cmd = [sys.executable, "-c", code]
    else:
        cmd = ["bash", "-e", "-o", "pipefail", "-c", CURL_FAILS_ON_HTTP_ERRORS + code]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.graph
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_runs(example: Example, base_url, mcp_server_url):
    assert DOCS_URL in example.code  # it talks to the server, whose URL the test substitutes
    done = _run(example, base_url, mcp_server_url)
    assert done.returncode == 0, f"{example.id} failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip(), f"{example.id} printed nothing"
