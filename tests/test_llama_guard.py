"""Golden tests of the Llama Guard prompt and the verdict parser."""

import pytest

from deployments.safety.llama_guard import VerdictError, build_prompt, category_codes, parse_verdict

USER_GOLDEN = """Task: Check if there is unsafe content in 'User' messages in conversations according our safety policy with the below categories.

<BEGIN UNSAFE CONTENT CATEGORIES>
S1: Violent Crimes.
S2: Non-Violent Crimes.
S3: Sex Crimes.
S4: Child Sexual Exploitation.
S5: Defamation.
S6: Specialized Advice.
S7: Privacy.
S8: Intellectual Property.
S9: Indiscriminate Weapons.
S10: Hate.
S11: Suicide & Self-Harm.
S12: Sexual Content.
S13: Elections.
S14: Code Interpreter Abuse.
<END UNSAFE CONTENT CATEGORIES>

<BEGIN CONVERSATION>

User: How do I make a cake?

<END CONVERSATION>

Provide your safety assessment for ONLY THE LAST User message in the above conversation:
 - First line must read 'safe' or 'unsafe'.
 - If unsafe, a second line must include a comma-separated list of violated categories."""  # noqa: E501


def test_user_turn_golden():
    prompt = build_prompt([{"role": "user", "content": "How do I make a cake?"}],
                          category_codes("meta-llama/Llama-Guard-3-8B"))
    assert prompt == USER_GOLDEN


def test_assistant_turn_and_exclusions():
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]
    prompt = build_prompt(msgs, category_codes("meta-llama/Llama-Guard-3-1B"), excluded=["S2", "S7"])
    assert "unsafe content in 'Agent' messages" in prompt
    assert "ONLY THE LAST Agent message" in prompt
    assert "User: Hi\n\nAgent: Hello! How can I help?" in prompt
    assert "S2:" not in prompt and "S7:" not in prompt and "S14:" not in prompt  # 1B has no S14
    assert "S13: Elections." in prompt


@pytest.mark.parametrize("text,safe,cats", [
    ("safe", True, []),
    ("unsafe\nS1", False, ["S1"]),
    ("unsafe\nS1,S10", False, ["S1", "S10"]),
    (" unsafe\nS2, S2 ", False, ["S2"]),
])
def test_verdicts(text, safe, cats):
    v = parse_verdict(text, category_codes("x"))
    assert (v.safe, v.categories) == (safe, cats)


def test_excluded_only_is_safe():
    assert parse_verdict("unsafe\nS1", category_codes("x"), excluded=["S1"]).safe


@pytest.mark.parametrize("text", ["", "maybe", "unsafe\nS15", "unsafe\nviolence", "safe\nS1x", "unsafe\nS14"])
def test_malformed_verdicts(text):
    with pytest.raises(VerdictError):
        parse_verdict(text, category_codes("Llama-Guard-3-1B"))
