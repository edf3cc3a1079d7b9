"""Keyword search (BM25 on bm25s + PyStemmer) without Ray: word forms, stop words, scores, languages, and an
index that grows and is filtered."""

import json
import re
from pathlib import Path

import pytest

from deployments.vector_io.bm25 import BM25Index, check_language, keyword_languages
from serve.config.vector_io import IndexConfig

WORD_FORMS = json.loads((Path(__file__).parent / "data" / "keyword_word_forms.json").read_text())


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _index(chunks: dict[str, str], language: str = "english") -> tuple[BM25Index, list[str]]:
    names = list(chunks)
    idx = BM25Index(language)
    idx.add(list(range(len(names))), [chunks[n] for n in names])
    return idx, names


@pytest.mark.parametrize("case", WORD_FORMS["queries"], ids=lambda c: c["query"])
def test_word_forms_find_their_chunk(case):
    chunks = WORD_FORMS["chunks"]
    # exact-word matching (the hand-written BM25 this replaced) cannot find the answer: no query word is in it
    assert not _words(case["query"]) & _words(chunks[case["answer"]])
    idx, names = _index(chunks)
    hits = idx.search(case["query"], 3)
    assert hits and names[hits[0][0]] == case["answer"]
    assert all(0 < score <= 1 for _, score in hits)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_stop_words_and_scores():
    idx, names = _index({"a": "the cat sat on the mat", "b": "the dog ran", "c": "cats and dogs"})
    assert idx.search("the of and", 5) == []  # stop words only: nothing to match
    hits = dict((names[c], s) for c, s in idx.search("cats on mats", 5))
    # "a" holds both terms once: the reference score (every term once, at about average length)
    assert set(hits) == {"a", "c"} and hits["a"] > hits["c"] and hits["a"] == pytest.approx(1.0, abs=0.15)
    # a query word no chunk holds weighs in the reference: the same chunk matches a smaller share of the query
    partial = dict((names[c], s) for c, s in idx.search("cats on mats zebra", 5))
    assert partial["a"] < hits["a"] * 0.75


def test_grows_and_filters():
    idx = BM25Index()
    idx.add([10, 11], ["volcanoes erupt", "bees dance"])
    assert [c for c, _ in idx.search("erupting volcano", 5)] == [10]
    idx.add([12], ["the volcano erupted again"])  # added after a search: the next search sees it
    assert {c for c, _ in idx.search("erupting volcano", 5)} == {10, 12}
    assert [c for c, _ in idx.search("erupting volcano", 5, allowed={12, 11})] == [12]
    assert idx.search("erupting volcano", 5, allowed=set()) == []
    assert len(idx.search("erupting volcano", 1)) == 1
    idx.add([13], ["!!! ---"])  # no words at all: kept, never matched
    assert len(idx) == 4 and 13 not in {c for c, _ in idx.search("volcano", 5)}


def test_languages():
    assert "english" in keyword_languages() and "german" in keyword_languages()
    idx, names = _index({"haus": "Die Häuser stehen am Fluss", "baum": "Der Baum ist alt"}, "german")
    assert [names[c] for c, _ in idx.search("Haus", 5)] == ["haus"]
    assert idx.search("die der", 5) == []  # German stop words
    with pytest.raises(ValueError, match="klingon"):
        check_language("klingon")
    assert IndexConfig().keyword_language == "english"
    with pytest.raises(ValueError, match="klingon"):
        IndexConfig(keyword_language="klingon")
