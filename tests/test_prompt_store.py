"""The prompt store (/v1/prompts) on both storage backends, sqlite and PostgreSQL, driven directly (no Ray)."""

from __future__ import annotations

import pytest

import deployments.agents.tables  # noqa: F401  (registers the tables on METADATA)
from deployments.agents.prompts import PromptStore, declared_variables, fill_variables
from serve.errors import InvalidRequestError, NotFoundError
from serve.principal import Principal, with_principal
from serve.protocol.prompts import CreatePromptRequest, UpdatePromptRequest
from serve.protocol.responses import PromptReference
from serve.storage import Database


@pytest.fixture
def store(database_url):
    db = Database(database_url)
    yield PromptStore(db)
    db.dispose()


def test_versions_default_and_list(store):
    p = store.create(CreatePromptRequest(prompt="Answer as {{ persona }} in {{lang}}."))
    assert p["prompt_id"].startswith("pmpt_") and len(p["prompt_id"]) == 5 + 48
    assert p["version"] == 1 and p["is_default"] and p["variables"] == ["persona", "lang"]
    v2 = store.update(p["prompt_id"], UpdatePromptRequest(prompt="Be {{persona}}.", version=1))
    assert v2["version"] == 2 and v2["is_default"] and v2["variables"] == ["persona"]
    assert store.get(p["prompt_id"])["version"] == 2
    assert store.get(p["prompt_id"], 1)["prompt"] == "Answer as {{ persona }} in {{lang}}."
    assert not store.get(p["prompt_id"], 1)["is_default"]
    v3 = store.update(p["prompt_id"], UpdatePromptRequest(prompt="Third.", version=2, set_as_default=False))
    assert v3["version"] == 3 and not v3["is_default"] and store.get(p["prompt_id"])["version"] == 2
    assert store.set_default(p["prompt_id"], 1)["version"] == 1
    assert [v["version"] for v in store.versions(p["prompt_id"])["data"]] == [1, 2, 3]
    other = store.create(CreatePromptRequest(prompt="Plain.", variables=[]))
    listed = store.list()["data"]
    assert [(x["prompt_id"], x["version"]) for x in listed] == [(p["prompt_id"], 1), (other["prompt_id"], 1)]


def test_stale_update_and_missing(store):
    p = store.create(CreatePromptRequest(prompt="x"))
    store.update(p["prompt_id"], UpdatePromptRequest(prompt="y", version=1))
    with pytest.raises(InvalidRequestError, match="not the latest"):
        store.update(p["prompt_id"], UpdatePromptRequest(prompt="z", version=1))  # someone else made version 2
    assert [v["prompt"] for v in store.versions(p["prompt_id"])["data"]] == ["x", "y"]
    with pytest.raises(NotFoundError):
        store.get(p["prompt_id"], 7)
    with pytest.raises(NotFoundError):
        store.set_default(p["prompt_id"], 7)
    store.delete(p["prompt_id"])
    for call in (lambda: store.get(p["prompt_id"]), lambda: store.versions(p["prompt_id"]),
                 lambda: store.delete(p["prompt_id"])):
        with pytest.raises(NotFoundError):
            call()


def test_owners_see_only_their_prompts(store):
    from opentelemetry import context

    def as_(name):
        return context.attach(with_principal(Principal(name)))

    token = as_("alice")
    try:
        mine = store.create(CreatePromptRequest(prompt="alice's"))
    finally:
        context.detach(token)
    token = as_("bob")
    try:
        assert store.list()["data"] == []
        with pytest.raises(NotFoundError):
            store.get(mine["prompt_id"])
        with pytest.raises(NotFoundError):
            store.update(mine["prompt_id"], UpdatePromptRequest(prompt="bob's", version=1))
    finally:
        context.detach(token)


def test_render_fills_variables(store):
    p = store.create(CreatePromptRequest(prompt="You are {{persona}}. Reply in {{ lang }}.",
                                         variables=["persona", "lang", "unused"]))
    text, echo = store.render(PromptReference(id=p["prompt_id"], variables={
        "persona": "a pirate", "lang": {"type": "input_text", "text": "French"}}))
    assert text == "You are a pirate. Reply in French."
    assert echo == {"id": p["prompt_id"], "version": "1", "variables": {
        "persona": "a pirate", "lang": {"type": "input_text", "text": "French"}}}
    with pytest.raises(InvalidRequestError, match=r"\['lang'\]"):
        store.render(PromptReference(id=p["prompt_id"], variables={"persona": "x"}))
    with pytest.raises(InvalidRequestError, match="no variables"):
        store.render(PromptReference(id=p["prompt_id"], variables={"persona": "x", "lang": "y", "mood": "z"}))
    with pytest.raises(NotFoundError):
        store.render(PromptReference(id="pmpt_nope"))


def test_variables_declared_and_filled():
    assert declared_variables("{{a}} {{ b }} {{a}}", None) == ["a", "b"]
    assert declared_variables("{{a}}", ["a", "b"]) == ["a", "b"]
    with pytest.raises(InvalidRequestError, match="does not declare"):
        declared_variables("{{a}} {{c}}", ["a"])
    assert fill_variables("{{a}}-{{ a }}", {"a": "1"}, "p") == "1-1"
    with pytest.raises(InvalidRequestError, match="string or an input_text"):
        fill_variables("{{a}}", {"a": {"type": "input_image", "image_url": "x"}}, "p")
    with pytest.raises(ValueError):
        CreatePromptRequest(prompt="x", variables=["not a name"])
    with pytest.raises(ValueError):
        PromptReference(id="pmpt_x", version="latest")
    assert PromptReference(id="pmpt_x", version="3").version == 3
