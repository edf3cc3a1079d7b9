"""Prompts (/v1/prompts) through the graph, and Responses that name one in `prompt`, with the OpenAI SDK (its
generic get/post for the routes it has no methods for)."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.conftest import SMOLLM2

pytestmark = pytest.mark.graph

TEXT_V1 = "You are a concise assistant. The user's name is {{name}}. Answer in one short sentence."
TEXT_V2 = "You are a tour guide in {{ city }}. The user's name is {{name}}."


@pytest.fixture(scope="module")
def client(base_url) -> OpenAI:
    return OpenAI(base_url=f"{base_url}/v1", api_key="none", max_retries=0, timeout=120)


def post(client: OpenAI, path: str, body: dict) -> dict:
    return client.post(path, body=body, cast_to=dict)


def get(client: OpenAI, path: str, **params) -> dict:
    return client.get(path, cast_to=dict, options={"params": params})


@pytest.fixture(scope="module")
def prompt_id(client) -> str:
    """A prompt with two versions: 1 the default again, 2 the latest."""
    p = post(client, "/prompts", {"prompt": TEXT_V1})
    post(client, f"/prompts/{p['prompt_id']}", {"prompt": TEXT_V2, "version": 1})
    post(client, f"/prompts/{p['prompt_id']}/set-default-version", {"version": 1})
    return p["prompt_id"]


def test_create_get_update_versions(client):
    p = post(client, "/prompts", {"prompt": TEXT_V1})
    assert p["prompt_id"].startswith("pmpt_") and p["version"] == 1 and p["is_default"]
    assert p["variables"] == ["name"] and p["prompt"] == TEXT_V1
    pid = p["prompt_id"]
    v2 = client.put(f"/prompts/{pid}", body={"prompt": TEXT_V2, "version": 1}, cast_to=dict)  # Llama Stack's verb
    assert v2["version"] == 2 and v2["is_default"] and v2["variables"] == ["city", "name"]
    assert get(client, f"/prompts/{pid}")["version"] == 2
    assert get(client, f"/prompts/{pid}", version=1)["prompt"] == TEXT_V1
    assert [v["version"] for v in get(client, f"/prompts/{pid}/versions")["data"]] == [1, 2]
    with pytest.raises(openai.BadRequestError, match="not the latest"):
        post(client, f"/prompts/{pid}", {"prompt": "stale", "version": 1})
    back = post(client, f"/prompts/{pid}/set-default-version", {"version": 1})
    assert back["version"] == 1 and back["is_default"]
    listed = {x["prompt_id"]: x for x in get(client, "/prompts")["data"]}
    assert listed[pid]["version"] == 1
    v3 = post(client, f"/prompts/{pid}", {"prompt": "Third.", "version": 2, "set_as_default": False})
    assert v3["version"] == 3 and not v3["is_default"] and get(client, f"/prompts/{pid}")["version"] == 1
    client.delete(f"/prompts/{pid}", cast_to=type(None))
    with pytest.raises(openai.NotFoundError):
        get(client, f"/prompts/{pid}")


def test_bad_prompts(client):
    with pytest.raises(openai.BadRequestError, match="does not declare"):
        post(client, "/prompts", {"prompt": "Hi {{a}} {{b}}", "variables": ["a"]})
    with pytest.raises(openai.BadRequestError):
        post(client, "/prompts", {"prompt": ""})
    with pytest.raises(openai.NotFoundError):
        get(client, "/prompts/pmpt_nope")
    p = post(client, "/prompts", {"prompt": "x"})
    with pytest.raises(openai.NotFoundError):
        get(client, f"/prompts/{p['prompt_id']}", version=9)
    with pytest.raises(openai.NotFoundError):
        post(client, f"/prompts/{p['prompt_id']}/set-default-version", {"version": 9})
    with pytest.raises(openai.BadRequestError):
        get(client, f"/prompts/{p['prompt_id']}", version=0)


def test_response_uses_the_prompt_as_instructions(client, prompt_id):
    r = client.responses.create(model=SMOLLM2, input="Who am I?", max_output_tokens=12, temperature=0,
                                prompt={"id": prompt_id, "variables": {"name": "Ada"}})
    rendered = TEXT_V1.replace("{{name}}", "Ada")
    assert r.instructions == rendered
    assert r.prompt.id == prompt_id and r.prompt.version == "1" and r.prompt.variables["name"] == "Ada"
    same = client.post("/responses/input_tokens", cast_to=dict, body={
        "model": SMOLLM2, "input": "Who am I?", "instructions": rendered})
    assert r.usage.input_tokens == same["input_tokens"]  # the model read the prompt's text as its instructions
    v2 = client.responses.create(model=SMOLLM2, input="Where am I?", max_output_tokens=12, temperature=0,
                                 prompt={"id": prompt_id, "version": "2",
                                         "variables": {"name": "Ada", "city": {"type": "input_text", "text": "Oslo"}}},
                                 instructions="Mention the weather.")
    assert v2.instructions == "You are a tour guide in Oslo. The user's name is Ada.\n\nMention the weather."
    assert client.responses.retrieve(v2.id).prompt.version == "2"


def test_prompt_errors_in_responses(client, prompt_id):
    with pytest.raises(openai.BadRequestError, match="city"):  # version 2 needs {{city}} too
        client.responses.create(model=SMOLLM2, input="x", prompt={"id": prompt_id, "version": "2",
                                                                  "variables": {"name": "Ada"}})
    with pytest.raises(openai.BadRequestError, match="variables"):
        client.responses.create(model=SMOLLM2, input="x", prompt={"id": prompt_id})
    with pytest.raises(openai.BadRequestError, match="no variables"):
        client.responses.create(model=SMOLLM2, input="x", prompt={"id": prompt_id, "variables": {"name": "A",
                                                                                             "mood": "sad"}})
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=SMOLLM2, input="x", prompt={"id": "pmpt_missing"})
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=SMOLLM2, input="x", prompt={"id": prompt_id, "version": "7"})
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=SMOLLM2, input="x", prompt={"id": prompt_id, "version": "latest"})
