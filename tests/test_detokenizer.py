import pytest

from deployments.inference.detokenizer import IncrementalDetokenizer, StopStringMatcher


def test_incremental_equals_full_decode(tokenizer):
    text = "Héllo wörld! 你好, 🙂 emoji and code: def f(x): return x**2"
    ids = tokenizer.encode(text, add_special_tokens=False)
    d = IncrementalDetokenizer(tokenizer)
    assert "".join(d.add(i) for i in ids) == tokenizer.decode(ids)


def test_special_tokens_skipped(tokenizer):
    d = IncrementalDetokenizer(tokenizer)
    ids = tokenizer.encode("Paris", add_special_tokens=False) + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert "".join(d.add(i) for i in ids) == "Paris"


@pytest.mark.parametrize("pieces,stops,expected", [
    (["Hello ", "wor", "ld"], ["world"], "Hello "),
    (["ab", "c", "STO", "P", "x"], ["STOP"], "abc"),
    (["ST", "AR", "T"], ["STOP"], "START"),  # held back, then released when it stops looking like a stop
    (["one\n", "\ntwo"], ["\n\n"], "one"),
])
def test_stop_strings_never_emitted(pieces, stops, expected):
    m = StopStringMatcher(stops)
    out = "".join(m.feed(p) for p in pieces) + m.flush()
    assert out == expected
