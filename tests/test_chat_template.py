import pytest

from deployments.inference.chat_template import encode_prompt, render_chat_prompt, to_template_messages
from serve.errors import InvalidRequestError
from serve.protocol.openai_chat import ChatMessage


def test_renders_chatml_with_generation_prompt(tokenizer):
    msgs = to_template_messages([ChatMessage(role="system", content="Be brief."),
                                 ChatMessage(role="user", content="Hi")])
    text = render_chat_prompt(tokenizer, msgs)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    ids = encode_prompt(tokenizer, text)
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(ids[0]) == 3  # no BOS added on top of the template's own special tokens


def test_default_system_prompt_and_content_parts(tokenizer):
    msgs = to_template_messages([ChatMessage(role="user", content=[{"type": "text", "text": "a"},
                                                                   {"type": "text", "text": "b"}])])
    text = render_chat_prompt(tokenizer, msgs)
    assert "You are a helpful AI assistant named SmolLM" in text
    assert "<|im_start|>user\nab<|im_end|>" in text


def test_developer_role_becomes_system(tokenizer):
    msgs = to_template_messages([ChatMessage(role="developer", content="Rules."),
                                 ChatMessage(role="user", content="x")])
    assert msgs[0]["role"] == "system"
    assert "<|im_start|>system\nRules.<|im_end|>" in render_chat_prompt(tokenizer, msgs)


def test_unsupported_part_names_param():
    with pytest.raises(InvalidRequestError) as e:
        to_template_messages([ChatMessage(role="user", content=[{"type": "image_url", "image_url": {"url": "x"}}])])
    assert e.value.param == "messages.0.content"


def test_content_required_for_user():
    with pytest.raises(ValueError):
        ChatMessage(role="user", content=None)
