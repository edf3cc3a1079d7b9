"""The endpoint scenarios beyond chat/completions: payloads, routes and response parsing (no server)."""

import pytest

from benchmarks.scenarios import SCENARIOS, RequestOptions
from benchmarks.workloads import WorkItem

ITEM = WorkItem(prompt="how do bees talk", input_tokens=4, output_tokens=16)


def test_vector_search_routes_to_the_store():
    s = SCENARIOS["vector-search"]()
    opts = RequestOptions(model="m", extra_body={"vector_store_id": "vs_1", "search_mode": "hybrid"})
    assert s.route(opts) == "/vector_stores/vs_1/search"
    assert s.payload(ITEM, opts) == {"query": "how do bees talk", "max_num_results": 10, "search_mode": "hybrid"}
    assert s.parse({"data": []}).finished
    with pytest.raises(ValueError):
        s.route(RequestOptions(model="m"))
    with pytest.raises(ValueError):
        s.parse({"error": "x"})


def test_run_shield():
    s = SCENARIOS["run-shield"]()
    body = s.payload(ITEM, RequestOptions(model="m", extra_body={"shield_id": "llama-guard"}))
    assert body["shield_id"] == "llama-guard" and body["messages"][0]["content"] == ITEM.prompt
    assert s.parse({"violation": None}).finished
    with pytest.raises(ValueError):
        s.payload(ITEM, RequestOptions(model="m"))


def test_responses_stream_and_body():
    s = SCENARIOS["responses"]()
    body = s.payload(ITEM, RequestOptions(model="m", extra_body={"tool_choice": "required"}))
    assert body["max_output_tokens"] == 16 and body["tool_choice"] == "required" and body["stream"]
    assert s.parse_event({"type": "response.output_text.delta", "delta": "Hi"}).text == "Hi"
    assert s.parse_event({"type": "response.in_progress"}).text == ""
    done = s.parse_event({"type": "response.completed",
                          "response": {"usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}}})
    assert done.finished and done.usage == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    full = s.parse({"object": "response", "output": [
        {"type": "file_search_call"}, {"type": "message", "content": [{"type": "output_text", "text": "ok"}]}]})
    assert full.text == "ok"
