"""Every route fuzzed against the server's own OpenAPI schema (schemathesis), through the running graph.

Each operation gets a few derandomized examples (same inputs every run): no response may be a 5xx, responses
must carry the documented content type and match their documented schema, and input that breaks the schema must
be rejected with a 4xx. The `/v1/openai/v1/...` and `/v1beta/...` aliases are left out: they mount the very same
handlers as `/v1/...`, so fuzzing them again doubles the time and reaches no new code.

Generation is kept cheap on a CPU box: any request that can make a model write has its token budget capped
(`_cap_generation`), so a fuzzed chat completion costs a prefill plus a couple of decode steps."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.conftest import MINILM, SMOLLM2

pytestmark = pytest.mark.graph

# per operation and phase; derandomized, so CI replays the same requests (more for a deeper local run)
EXAMPLES = int(os.environ.get("STACKSERVE_FUZZ_EXAMPLES", "10"))
MAX_TOKENS = 2
ALIASES = r"^/v1(/openai/v1|beta)/"
# token budgets by name, wherever a fuzzed body can ask a model to generate
BUDGETS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]
STATUSES: Counter = Counter()  # (status class) -> requests sent, printed at the end


def _load_schema():
    # The app's own schema, built without Ray (collection happens before the graph starts); the test checks that
    # the running graph serves this very document. (schemathesis' from_fixture loader breaks on pytest 9.)
    from serve.app import create_app

    loaded = schemathesis.openapi.from_dict(create_app().openapi()).exclude(path_regex=ALIASES)
    loaded.config.update(request_timeout=60)
    loaded.config.generation.update(max_examples=EXAMPLES, deterministic=True)
    loaded.config.phases.update(phases=["examples", "coverage", "fuzzing"])
    return loaded


schema = _load_schema()


@pytest.fixture(scope="module")
def served_schema(base_url) -> dict:
    import httpx

    return httpx.get(f"{base_url}/openapi.json", timeout=30).raise_for_status().json()


def _without_examples(value):
    # The served document carries empty `example` entries on some parameters and bodies that create_app() alone
    # does not (the ingress replica builds its routes through Ray Serve): no part of the contract, left out.
    if isinstance(value, dict):
        return {k: _without_examples(v) for k, v in value.items() if k != "example"}
    if isinstance(value, list):
        return [_without_examples(v) for v in value]
    return value


def test_graph_serves_the_fuzzed_schema(served_schema):
    """The fuzzed document is the one the graph serves: same operations, parameters, bodies and components."""
    assert _without_examples(served_schema) == _without_examples(schema.raw_schema)


def _cap_generation(value):
    """Cap every token budget in a JSON body (nested too, e.g. an agent's sampling_params) and add one where a
    generating request has none, so no fuzzed request decodes more than MAX_TOKENS tokens."""
    if isinstance(value, list):
        return [_cap_generation(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _cap_generation(v) for k, v in value.items()}
    for key in BUDGETS:
        if isinstance(out.get(key), int) and not isinstance(out[key], bool) and out[key] > MAX_TOKENS:
            out[key] = MAX_TOKENS
    return out


# Routes that run a model get a served model's id in place of a fuzzed string (a random id is a 404 before any
# model code runs, and the unknown-model case is tested in test_graph_api.py), and their token budget and `n` capped.
MODEL_ROUTES = {"/v1/chat/completions": (SMOLLM2, "max_tokens"), "/v1/completions": (SMOLLM2, "max_tokens"),
                "/v1/responses": (SMOLLM2, "max_output_tokens"), "/v1/embeddings": (MINILM, None)}


def _aim_at_a_model(body: dict, path: str) -> None:
    model, budget = MODEL_ROUTES[path]
    if isinstance(body.get("model"), str):
        body["model"] = model
    if budget:
        body.setdefault(budget, MAX_TOKENS)
    if isinstance(body.get("n"), int) and not isinstance(body["n"], bool) and body["n"] > 2:
        body["n"] = 2


@schema.parametrize()
@settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_route_against_its_schema(case, base_url):
    if isinstance(case.body, dict):
        case.body = _cap_generation(case.body)
        if case.method == "POST" and case.path in MODEL_ROUTES:
            _aim_at_a_model(case.body, case.path)
    response = case.call_and_validate(base_url=base_url, checks=CHECKS)
    STATUSES[f"{response.status_code // 100}xx"] += 1


def test_fuzz_summary():
    print(f"fuzzed requests by status: {dict(sorted(STATUSES.items()))}")
    assert STATUSES["2xx"] and STATUSES["4xx"]  # both valid and invalid requests reached the handlers
