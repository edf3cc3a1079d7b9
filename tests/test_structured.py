"""Structured output pieces on the real SmolLM2 tokenizer and real xgrammar (no model, no Ray)."""

import json

import pytest

from deployments.inference.structured import GrammarCompiler, JsonDepth
from serve.errors import InvalidRequestError

SCHEMA = {"type": "object",
          "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "string"}}},
          "required": ["a", "b"]}


@pytest.fixture(scope="module")
def compiler(tokenizer):
    return GrammarCompiler(tokenizer, len(tokenizer), [tokenizer.convert_tokens_to_ids("<|im_end|>")])


def test_compiled_grammars_are_cached(compiler):
    assert compiler.compile(SCHEMA) is compiler.compile(json.loads(json.dumps(SCHEMA)))


@pytest.mark.parametrize("schema,needle", [
    ({"type": "nonsense"}, "invalid JSON schema"),
    ({"type": "object", "properties": {"a": {"type": "integer", "minimum": "x"}}}, "invalid JSON schema at properties"),
    ([1, 2], "must be an object"),
])
def test_bad_schemas_name_the_problem(compiler, schema, needle):
    with pytest.raises(InvalidRequestError, match=needle) as e:
        compiler.compile(schema, param="response_format.json_schema.schema")
    assert e.value.param == "response_format.json_schema.schema"


def test_json_depth():
    d = JsonDepth().feed('{"a":[1,{"b":"x\\"y')
    assert (d.stack, d.in_string) == (3, True)
    assert d.copy().feed('"}]}').cost == 0


@pytest.mark.parametrize("prefix", ["", '{"a":1', '{"a":12,"b":["x', '{"a":3,"b":[]'])
def test_closing_path_completes_the_structure(compiler, tokenizer, prefix):
    c = compiler.constraint(compiler.compile(SCHEMA))
    for t in tokenizer.encode(prefix, add_special_tokens=False):
        assert c.matcher.accept_token(t)
        c.depth.feed(c.strings[t])
    path = c.closing_path(limit=64)
    doc = json.loads(prefix + tokenizer.decode(path))
    assert set(doc) == {"a", "b"}


def test_constraint_forces_closing_at_budget(compiler, tokenizer):
    import torch

    c = compiler.constraint(compiler.compile(SCHEMA))
    prefix = '{"a":1,"b":["some text'
    for t in tokenizer.encode(prefix, add_special_tokens=False):
        c.matcher.accept_token(t)
        c.depth.feed(c.strings[t])
    out = prefix
    remaining = len(c.closing_path(limit=64))
    while remaining:
        logits = torch.zeros(len(tokenizer))
        c.apply(logits, remaining)
        tok = c.confirm(int(logits.argmax()), remaining)
        c.advance(tok)
        out += c.strings[tok]
        remaining -= 1
    assert json.loads(out)["b"] == ["some text"]
    assert c.is_terminated()


def test_follow_keeps_the_engines_tokens_until_only_the_closing_path_fits(compiler, tokenizer):
    """For engines that mask by the grammar themselves (vLLM): their tokens pass while the structure can still close
    in the budget; then the closing path replaces them."""
    c = compiler.constraint(compiler.compile(SCHEMA))
    text = '{"a":1,"b":["a long string that the engine would keep on writing'
    tokens = tokenizer.encode(text, add_special_tokens=False)
    budget = len(tokens) - 3  # the engine's continuation cannot fit: the string must close early
    out: list[int] = []
    for t in tokens:
        emit = c.follow(t, budget - len(out))
        for x in emit:
            c.advance(x)
        out += emit
        if emit != [t]:
            break
    assert len(out) <= budget and c.is_terminated()
    doc = json.loads(tokenizer.decode(out))
    engine_string = "a long string that the engine would keep on writing"
    assert doc["a"] == 1 and doc["b"][0] and engine_string.startswith(doc["b"][0])  # the engine's words, cut short
    assert len(doc["b"][0]) < len(engine_string)
