"""The playground (/playground, serve/playground/) in headless Chromium driven by Playwright, against the running
test graph: every view calls the graph's public API, as a client would, with the API key the page holds.

Chromium is Debian's package (`make chromium`), driven by its path: `playwright install` is never run. Where it is
missing these tests skip, except under CI (`CI` set), where they fail. Each test saves a screenshot of its view in
docs/screenshots/ (README shows chat.png and knowledge.png)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from serve.auth import is_open_path
from tests.conftest import API_KEY, GUARD_TINY, SMOLLM2, TINY

pytestmark = pytest.mark.graph

SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CORPUS = Path(__file__).parent / "data" / "corpus"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (the test extra: make install)")
    executable = shutil.which("chromium")
    if executable is None:
        _unavailable("Chromium is missing: `make chromium` installs Debian's package (needs root + apt-get)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_view(page, url: str, view: str):
    response = page.goto(f"{url}/playground/#{view}")
    assert response is not None and response.status == 200
    return page


def pick_model(page, select: str, model: str) -> None:
    page.wait_for_selector(f'{select} option[value="{model}"]', state="attached")
    page.select_option(select, model)


def test_playground_paths_are_open_and_only_those():
    assert is_open_path("/playground") and is_open_path("/playground/app.js")
    assert not is_open_path("/playgroundx") and not is_open_path("/v1/stackserve/graph")


def test_scaling_target_reads_replicas_or_autoscaling_bounds():
    from serve.graph_status import scaling_target

    assert scaling_target({}).num_replicas == 1  # Ray's default
    assert scaling_target({"num_replicas": 2}).num_replicas == 2
    auto = scaling_target({"num_replicas": "auto", "autoscaling_config": {"min_replicas": 1, "max_replicas": 4,
                                                                          "target_ongoing_requests": 8}})
    assert (auto.num_replicas, auto.min_replicas, auto.max_replicas, auto.target_ongoing_requests) == (None, 1, 4, 8)


def test_engine_load_reads_the_engines_stats():
    from serve.graph_status import engine_load

    load = engine_load({"replica": "r1", "running": 2, "waiting": 1, "max_num_seqs": 8, "total_kv_blocks": 100,
                        "free_kv_blocks": 25, "steps": 9})
    assert (load.replica, load.running, load.waiting, load.max_num_seqs, load.kv_cache_usage) == ("r1", 2, 1, 8, 0.75)
    assert engine_load({"replica": "r", "running": 0, "waiting": 0, "max_num_seqs": 4}).kv_cache_usage is None


def test_chat_streams_tokens_as_they_arrive(page, base_url):
    open_view(page, base_url, "chat")
    pick_model(page, "#chat-model", SMOLLM2)
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max-tokens", "16")
    page.fill("#chat-prompt", "Write a short story about a cat who learns to sail.")
    # the answer's length, sampled in the page every 10 ms from the click on
    page.evaluate("""() => { window.lengths = []; setInterval(() => {
        const a = document.querySelector('.chat-answer');
        if (a) window.lengths.push(a.textContent.length); }, 10); }""")
    page.click("#chat-send")
    stats = page.wait_for_selector(".chat-stats:has-text('tokens/s')", timeout=120_000).inner_text()
    lengths = page.evaluate("window.lengths")
    assert lengths == sorted(lengths)
    assert len({n for n in lengths if n > 0}) >= 3, lengths  # the text grew over at least three frames
    assert "TTFT" in stats and "completion tokens" in stats
    assert page.inner_text(".chat-answer").strip()
    shot(page, "chat")


def test_structured_output_shows_parsed_json(page, base_url):
    open_view(page, base_url, "chat")
    pick_model(page, "#chat-model", SMOLLM2)
    schema = {"type": "object", "properties": {"sky_is_blue": {"type": "boolean"}}, "required": ["sky_is_blue"],
              "additionalProperties": False}
    page.fill("#chat-schema", json.dumps(schema))
    page.fill("#chat-max-tokens", "40")
    page.fill("#chat-prompt", "Is the sky blue? Answer in JSON.")
    page.click("#chat-send")
    parsed = json.loads(page.wait_for_selector(".parsed-json", timeout=120_000).inner_text())
    assert isinstance(parsed["sky_is_blue"], bool)
    shot(page, "chat-structured")


def test_tool_call_is_shown_and_its_result_sent_back(page, base_url):
    open_view(page, base_url, "chat")
    pick_model(page, "#chat-model", GUARD_TINY)  # random weights: the forced call's grammar still holds
    weather = {"name": "get_weather", "description": "Weather in a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                              "required": ["city"], "additionalProperties": False}}
    page.fill("#chat-tool", json.dumps(weather))
    page.check("#chat-force-tool")
    page.fill("#chat-max-tokens", "40")
    page.fill("#chat-prompt", "What is the weather in Paris?")
    page.click("#chat-send")
    call = page.wait_for_selector(".chat-tool-call", timeout=120_000).inner_text()
    assert call.startswith("get_weather(") and "city" in json.loads(call.removeprefix("get_weather(")[:-1])
    page.fill(".chat-tool-result", '{"temp_c": 3}')
    page.click(".chat-tool-send")
    page.wait_for_selector(".msg .role:has-text('tool results')")
    page.wait_for_function("document.querySelectorAll('.chat-stats').length == 2 && "
                           "[...document.querySelectorAll('.chat-stats')].every(s => s.textContent)", timeout=120_000)
    shot(page, "chat-tools")


def test_uploaded_file_is_searchable_and_cited(page, base_url):
    open_view(page, base_url, "knowledge")
    page.fill("#store-name", "playground-kb")
    page.click("#store-create")
    page.wait_for_selector("#stores tr.selected:has-text('playground-kb')")
    page.set_input_files("#file-input", str(CORPUS / "honeybees.md"))
    page.wait_for_selector("#uploads li.ingest-completed", timeout=120_000)
    page.fill("#search-query", "waggle dance flowers")
    page.select_option("#search-mode", "hybrid")
    page.click("#search-go")
    first = page.wait_for_selector("#search-results .chunk")
    assert "honeybees.md" in first.inner_text() and "waggle" in page.inner_text("#search-results").lower()
    pick_model(page, "#rag-model", SMOLLM2)
    page.fill("#rag-question", "How do honeybees tell each other where flowers are?")
    page.fill("#rag-temperature", "0")  # as test_graph_responses: SmolLM2's forced search call stays short
    page.click("#rag-ask")
    cite = page.wait_for_selector("#rag-answer a.cite", timeout=120_000)
    assert "honeybees.md" in cite.inner_text()
    cite.click()
    page.wait_for_selector("#rag-output .chunk.hl:has-text('honeybees.md')")
    shot(page, "knowledge")


def test_agents_view_shows_each_tool_call_as_an_item(page, base_url, mcp_server_url):
    open_view(page, base_url, "agents")
    pick_model(page, "#agent-model", SMOLLM2)
    page.wait_for_selector("#agent-web-search-label", state="visible")  # the test graph configures web search
    page.fill("#agent-temperature", "0")
    page.fill("#agent-max-tokens", "60")
    page.fill("#agent-mcp-url", mcp_server_url)
    page.fill("#agent-mcp-label", "tools")
    page.fill("#agent-mcp-allowed", "lookup_capital")
    page.select_option("#agent-tool-choice", "required")
    page.fill("#agent-input", "What is the capital of France? Look it up.")
    page.evaluate("""() => { window.lengths = []; setInterval(() => {
        const a = document.querySelector('.agent-item[data-type="message"] .agent-text');
        if (a) window.lengths.push(a.textContent.length); }, 10); }""")
    page.click("#agent-send")
    page.wait_for_function("document.querySelector('.agent-stats')?.textContent", timeout=120_000)
    types = [i.get_attribute("data-type") for i in page.query_selector_all(".agent-turn .agent-item")]
    assert types[0] == "mcp_list_tools" and "mcp_call" in types and types[-1] == "message", types
    assert page.inner_text('.agent-item[data-type="mcp_list_tools"]').strip().endswith("lookup_capital")
    call = page.inner_text('.agent-item[data-type="mcp_call"]')
    assert "lookup_capital(" in call and "completed" in call.lower()  # the header is shown in capitals
    assert page.inner_text('.agent-item[data-type="mcp_call"] .agent-output').strip()  # the tool's result
    lengths = page.evaluate("window.lengths")
    assert lengths == sorted(lengths) and len({n for n in lengths if n > 0}) >= 2, lengths  # streamed deltas
    first = page.inner_text(".agent-status").split(":")[0]
    assert page.inner_text("#agent-thread") == f"continuing {first}"
    shot(page, "agents")
    # the next turn continues the first by previous_response_id
    page.fill("#agent-mcp-url", "")
    page.fill("#agent-max-tokens", "12")
    page.fill("#agent-input", "And of Japan?")
    page.click("#agent-send")
    page.wait_for_function("[...document.querySelectorAll('.agent-stats')].filter(s => s.textContent).length == 2",
                           timeout=120_000)
    second = page.inner_text(".agent-status").split(":")[0]  # the newest turn is on top
    stored = httpx.get(f"{base_url}/v1/responses/{second}", timeout=30).json()
    assert stored["previous_response_id"] == first


def test_agents_background_response_is_cancelled(page, base_url):
    open_view(page, base_url, "agents")
    pick_model(page, "#agent-model", GUARD_TINY)
    page.fill("#agent-max-tokens", "1500")  # random weights: it would ramble on until cancelled
    page.check("#agent-background")
    page.fill("#agent-input", "Ramble.")
    page.click("#agent-send")
    page.wait_for_selector('.agent-status[data-status="in_progress"]', timeout=60_000)  # polled while it runs
    page.click(".agent-cancel")
    page.wait_for_selector('.agent-status[data-status="cancelled"]')
    page.wait_for_selector(".agent-stats:has-text('ms total')")  # the poll saw it end
    assert page.locator(".agent-cancel").is_hidden()
    rid = page.inner_text(".agent-status").split(":")[0]
    assert httpx.get(f"{base_url}/v1/responses/{rid}", timeout=30).json()["status"] == "cancelled"
    shot(page, "agents-background")


@pytest.fixture(scope="module")
def responses_trace(base_url) -> str:
    """The trace id of a Responses call with file_search: Ingress -> Agents -> LLM, VectorIO -> Embeddings."""
    with httpx.Client(base_url=base_url, timeout=180) as http:
        with open(CORPUS / "honeybees.md", "rb") as fh:
            file_id = http.post("/v1/files", data={"purpose": "assistants"},
                                files={"file": ("honeybees.md", fh)}).json()["id"]
        store = http.post("/v1/vector_stores", json={"name": "playground-traces", "file_ids": [file_id]}).json()
        deadline = time.time() + 120
        while http.get(f"/v1/vector_stores/{store['id']}").json()["file_counts"]["in_progress"]:
            assert time.time() < deadline
            time.sleep(0.3)
        r = http.post("/v1/responses", json={
            "model": SMOLLM2, "input": "Where are the flowers?", "max_output_tokens": 60, "tool_choice": "required",
            "tools": [{"type": "file_search", "vector_store_ids": [store["id"]], "max_num_results": 2}]})
        assert r.status_code == 200, r.text
        assert any(o["type"] == "file_search_call" for o in r.json()["output"]), r.text
        return r.headers["x-trace-id"]


def test_trace_waterfall_shows_spans_of_four_deployments(page, base_url, responses_trace):
    open_view(page, base_url, "traces")
    deadline = time.time() + 60
    deployments: set[str] = set()
    # every replica exports its spans on its own: wait till the tree holds them all
    while not {"Ingress", "Agents", "VectorIO"} <= deployments:
        assert time.time() < deadline, f"the trace's spans never reached the span store: {deployments}"
        page.click("#traces-refresh")
        page.wait_for_selector("#traces-refresh:enabled")  # disabled while the list loads
        row = page.locator(f'#trace-list tr[data-trace="{responses_trace}"]')
        if row.count():
            row.click()
            page.wait_for_selector(f"#trace-detail:has-text('{responses_trace}')")
            deployments = {r.get_attribute("data-deployment") for r in page.query_selector_all("#waterfall .span-row")}
            deployments.discard("")
        time.sleep(1)
    assert {"Ingress", "Agents", "VectorIO"} <= deployments, deployments  # SmolLM2's spans: in the Ingress
    bars = page.query_selector_all("#waterfall .span-bar")
    assert bars and all("left:" in b.get_attribute("style") for b in bars)
    assert "TTFT" in page.inner_text("#waterfall")  # the LLM span's GenAI attributes
    shot(page, "traces")


def test_graph_view_lists_every_deployment(page, base_url, main_config):
    from serve.deploy_config import deployment_options

    names = list(deployment_options(main_config))
    graph = httpx.get(f"{base_url}/v1/stackserve/graph", timeout=30).json()
    assert [d["name"] for d in graph["deployments"]] == names
    vector_io = next(d for d in graph["deployments"] if d["name"] == "VectorIO")
    assert vector_io["target"]["num_replicas"] == 2 and vector_io["running_replicas"] == 2
    # the engine load (batch and queue) of each deployment that runs an engine: the Ingress (SmolLM2 is served
    # in_ingress) and each LLM deployment; nothing elsewhere
    engines = {d["name"]: d["engine"] for d in graph["deployments"]}
    assert f"LLM:{SMOLLM2.replace('/', '--')}" not in engines
    llm = "Ingress"
    assert engines[llm]["max_num_seqs"] > 0 and engines[llm]["waiting"] >= 0 and engines[llm]["replica"]
    assert engines["VectorIO"] is None and engines["LLM:guard-scripted"] is not None
    open_view(page, base_url, "graph")
    for name in names:
        row = page.wait_for_selector(f'#graph-deployments tr[data-deployment="{name}"]')
        assert "RUNNING" in row.inner_text()
    assert "running," in page.inner_text(f'#graph-deployments tr[data-deployment="{llm}"] .load')
    page.wait_for_selector("#batches tr")
    shot(page, "graph")


def test_safety_view_shows_each_shields_verdict(page, base_url):
    open_view(page, base_url, "safety")
    page.fill("#safety-text", "How do I kill my neighbour?")
    page.click("#safety-check")
    row = page.wait_for_selector('#shield-results tr[data-shield="llama-guard"]', timeout=120_000)
    assert "unsafe" in (row.query_selector(".verdict").get_attribute("class") or "")
    assert page.wait_for_selector("#moderation").inner_text()
    shot(page, "safety")


def test_wrong_api_key_shows_the_401_message(page, secure_url):
    page.add_init_script("localStorage.setItem('stackserve.apiKey', 'sk-wrong')")
    open_view(page, secure_url, "chat")  # the page itself needs no key
    error = page.wait_for_selector("#view-chat .error:has-text('Invalid or missing API key')")
    shot(page, "wrong-key")
    page.fill("#api-key", API_KEY)
    page.dispatch_event("#api-key", "change")
    pick_model(page, "#chat-model", TINY)
    assert error.is_hidden()
