"""Access control on a shared server (tests/conftest.py `tenants_config`): every stored resource belongs to the
principal whose key created it; another principal gets 404 (not 403) for it and never sees it in a list; registry
changes need the admin role; per-principal limits answer 429 with Retry-After. Real graph, openai SDK + httpx."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import MINILM, TENANT_KEYS, TINY

pytestmark = pytest.mark.graph


@pytest.fixture(scope="module")
def url(tenants_url) -> str:
    return tenants_url


def sdk(url: str, who: str) -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key=TENANT_KEYS[who], max_retries=0)


def http(url: str, who: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TENANT_KEYS[who]}"}, timeout=120)


def assert_404(call) -> None:
    with pytest.raises(openai.NotFoundError):
        call()


def test_unknown_key_is_401_and_baggage_cannot_impersonate(url):
    r = httpx.post(f"{url}/v1/files", headers={"Authorization": "Bearer sk-nobody"},
                   files={"file": ("a.txt", b"x")}, data={"purpose": "assistants"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert "sk-nobody" not in r.text
    alice_file = sdk(url, "alice").files.create(file=("secret.txt", b"alice's secret"), purpose="assistants").id
    # bob names alice in W3C baggage: the ingress overwrites it with the key's principal
    with http(url, "bob") as bob:
        r = bob.get(f"/v1/files/{alice_file}", headers={"baggage": "stackserve.principal=alice,stackserve.roles=admin"})
        assert r.status_code == 404, r.text


def test_files_are_private(url):
    alice, bob = sdk(url, "alice"), sdk(url, "bob")
    f = alice.files.create(file=("notes.txt", b"the launch code is 1234"), purpose="assistants")
    assert alice.files.retrieve(f.id).filename == "notes.txt"
    assert_404(lambda: bob.files.retrieve(f.id))
    assert_404(lambda: bob.files.content(f.id))
    assert_404(lambda: bob.files.delete(f.id))
    assert f.id not in [x.id for x in bob.files.list()]
    assert f.id in [x.id for x in alice.files.list()]
    assert alice.files.content(f.id).content == b"the launch code is 1234"  # bob's delete did nothing


def test_vector_stores_are_private(url):
    alice, bob = sdk(url, "alice"), sdk(url, "bob")
    f = alice.files.create(file=("facts.txt", b"Zorblax is the capital of Quintar."), purpose="assistants")
    vs = alice.vector_stores.create(name="alice-kb", file_ids=[f.id])
    deadline = time.time() + 120
    while alice.vector_stores.files.retrieve(f.id, vector_store_id=vs.id).status == "in_progress":
        assert time.time() < deadline
        time.sleep(0.3)
    hits = alice.vector_stores.search(vs.id, query="capital of Quintar")
    assert "Zorblax" in hits.data[0].content[0].text
    assert_404(lambda: bob.vector_stores.retrieve(vs.id))
    assert_404(lambda: bob.vector_stores.search(vs.id, query="capital of Quintar"))
    assert_404(lambda: bob.vector_stores.files.list(vector_store_id=vs.id))
    assert_404(lambda: bob.vector_stores.files.retrieve(f.id, vector_store_id=vs.id))
    assert_404(lambda: bob.vector_stores.update(vs.id, name="mine now"))
    assert_404(lambda: bob.vector_stores.delete(vs.id))
    assert vs.id not in [s.id for s in bob.vector_stores.list()]
    # bob cannot read alice's file through a store of his own either
    own = bob.vector_stores.create(name="bob-kb")
    assert_404(lambda: bob.vector_stores.files.create(vector_store_id=own.id, file_id=f.id))
    assert alice.vector_stores.retrieve(vs.id).name == "alice-kb"


def test_responses_and_conversations_are_private(url):
    alice, bob = sdk(url, "alice"), sdk(url, "bob")
    conv = alice.conversations.create(items=[{"type": "message", "role": "user", "content": "my PIN is 9876"}])
    r = alice.responses.create(model=TINY, input="hello", max_output_tokens=4, conversation=conv.id)
    assert alice.responses.retrieve(r.id).id == r.id
    assert_404(lambda: bob.responses.retrieve(r.id))
    assert_404(lambda: bob.responses.input_items.list(r.id))
    assert_404(lambda: bob.responses.delete(r.id))
    assert_404(lambda: bob.responses.create(model=TINY, input="and?", max_output_tokens=2, previous_response_id=r.id))
    assert_404(lambda: bob.conversations.retrieve(conv.id))
    assert_404(lambda: bob.conversations.items.list(conv.id))
    assert_404(lambda: bob.conversations.delete(conv.id))
    assert_404(lambda: bob.responses.create(model=TINY, input="what is my PIN?", max_output_tokens=2,
                                            conversation=conv.id))
    with http(url, "bob") as b, http(url, "alice") as a:
        assert r.id not in [x["id"] for x in b.get("/v1/responses").json()["data"]]
        assert r.id in [x["id"] for x in a.get("/v1/responses").json()["data"]]
    assert len(alice.conversations.items.list(conv.id).data) >= 3  # the PIN message, hello, the answer


def test_batches_are_private_and_outputs_belong_to_the_owner(url):
    alice, bob = sdk(url, "alice"), sdk(url, "bob")
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}}
    input_id = alice.files.create(file=("in.jsonl", (json.dumps(line) + "\n").encode()), purpose="batch").id
    with pytest.raises(openai.NotFoundError):  # bob cannot run alice's input file
        bob.batches.create(input_file_id=input_id, endpoint="/v1/chat/completions", completion_window="24h")
    b = alice.batches.create(input_file_id=input_id, endpoint="/v1/chat/completions", completion_window="24h")
    assert_404(lambda: bob.batches.retrieve(b.id))
    assert_404(lambda: bob.batches.cancel(b.id))
    assert b.id not in [x.id for x in bob.batches.list()]
    deadline = time.time() + 180
    while (b := alice.batches.retrieve(b.id)).status not in ("completed", "failed", "expired", "cancelled"):
        assert time.time() < deadline, b.status
        time.sleep(0.5)
    assert b.status == "completed", b.errors
    out = json.loads(alice.files.content(b.output_file_id).text.splitlines()[0])
    assert out["custom_id"] == "a" and out["response"]["status_code"] == 200
    assert_404(lambda: bob.files.content(b.output_file_id))


def test_datasets_and_llama_agents_are_private(url):
    with http(url, "alice") as a, http(url, "bob") as b:
        r = a.post("/v1/datasets", json={"purpose": "eval/question-answer", "dataset_id": "alice-qa",
                                         "source": {"type": "rows", "rows": [{"q": "2+2", "a": "4"}]}})
        assert r.status_code == 200, r.text
        assert a.get("/v1/datasetio/iterrows/alice-qa").json()["data"] == [{"q": "2+2", "a": "4"}]
        for call in (lambda: b.get("/v1/datasets/alice-qa"), lambda: b.get("/v1/datasetio/iterrows/alice-qa"),
                     lambda: b.post("/v1/datasetio/append-rows/alice-qa", json={"rows": [{"q": "x", "a": "y"}]}),
                     lambda: b.delete("/v1/datasets/alice-qa")):
            assert call().status_code == 404
        assert "alice-qa" not in [d["identifier"] for d in b.get("/v1/datasets").json()["data"]]
        assert a.get("/v1/datasetio/iterrows/alice-qa").json()["data"] == [{"q": "2+2", "a": "4"}]

        agent = a.post("/v1/agents", json={"agent_config": {"model": TINY, "instructions": "be brief"}})
        assert agent.status_code == 200, agent.text
        agent_id = agent.json()["agent_id"]
        assert b.get(f"/v1/agents/{agent_id}").status_code == 404
        assert b.post(f"/v1/agents/{agent_id}/session", json={"session_name": "hijack"}).status_code == 404
        assert b.delete(f"/v1/agents/{agent_id}").status_code == 404
        assert agent_id not in [x["agent_id"] for x in b.get("/v1/agents").json()["data"]]
        assert a.get(f"/v1/agents/{agent_id}").status_code == 200


def test_registry_changes_need_admin(url):
    with http(url, "bob") as b, http(url, "root") as root:
        shield = {"shield_id": "scanner-2", "provider_id": "code-scanner"}
        r = b.post("/v1/shields", json=shield)
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"
        assert b.delete("/v1/shields/code-scanner").status_code == 403
        assert b.get("/v1/shields/code-scanner").status_code == 200  # reading the registry is for everyone
        assert root.post("/v1/shields", json=shield).status_code == 200
        assert b.get("/v1/shields/scanner-2").status_code == 200
        assert root.delete("/v1/shields/scanner-2").status_code == 200
        group = {"toolgroup_id": "mcp::x", "provider_id": "model-context-protocol",
                 "mcp_endpoint": {"uri": "http://127.0.0.1:9/mcp"}}
        assert b.post("/v1/toolgroups", json=group).status_code == 403
        assert b.delete("/v1/toolgroups/builtin::rag").status_code == 403


def test_rate_limit_429_with_retry_after(url):
    carol = sdk(url, "carol")
    for _ in range(3):
        carol.models.list()
    with pytest.raises(openai.RateLimitError) as e:
        carol.models.list()
    assert e.value.response.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(e.value.response.headers["retry-after"]) >= 1
    sdk(url, "alice").models.list()  # one principal's limit is not another's


def test_concurrency_quota_counts_a_stream_until_its_end(url):
    dave = sdk(url, "dave")
    opened, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def stream() -> None:
        try:
            s = dave.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=900, stream=True, extra_body={"ignore_eos": True})
            next(iter(s))
            opened.set()
            release.wait(60)
            for _ in s:
                pass
        except BaseException as e:  # noqa: BLE001 - surfaced below
            errors.append(e)
            opened.set()

    t = threading.Thread(target=stream)
    t.start()
    assert opened.wait(120)
    try:
        with pytest.raises(openai.RateLimitError) as e:
            dave.embeddings.create(model=MINILM, input="x")
        assert e.value.response.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert e.value.response.headers["retry-after"] == "1"
    finally:
        release.set()
        t.join(300)  # the rest of a 900-token stream: minutes on a loaded 2-core box
    assert not errors, errors
    assert dave.embeddings.create(model=MINILM, input="x").data  # the finished stream gave its slot back
