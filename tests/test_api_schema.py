"""The live history API against its own OpenAPI document, fuzzed by schemathesis.

A real ``twistd -n tantra`` on loopback with a small SQLite store holding a
few hundred readings (numbers and booleans, two devices, several units) is
asked what schemathesis derives from ``/api/v1/openapi.json``: every
operation, positive and negative cases, checked for 5xx answers, status codes
and content types the document does not list, and bodies that do not match
its schemas. Examples are bounded so the test stays well under 30 s.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.hubproc import HubProcess

pytestmark = pytest.mark.integration

#: Examples per operation and generation mode.
EXAMPLES = 40
SEEDED = 300


def _seed(hub: HubProcess) -> None:
    """Readings a field would send: numbers, booleans, units, a seq, spread over time."""
    now_ms = int(time.time() * 1000)
    lines = []
    for i in range(SEEDED):
        device = ("farm-1", "farm-2")[i % 2]
        if i % 3 == 0:
            body = {"sensor": "pump", "value": i % 2 == 0}
        elif i % 3 == 1:
            body = {"sensor": "moisture", "value": 40 + i % 7, "unit": "%"}
        else:
            body = {"sensor": "rpm", "value": 1000.5 + i, "seq": i}
        lines.append(json.dumps({"device": device, "ts": now_ms - 1000 * (SEEDED - i), **body}))
    with socket.create_connection(("127.0.0.1", hub.ports["tcp"]), timeout=5) as conn:
        conn.sendall(("\n".join(lines) + "\n").encode())
        conn.sendall(b'{"device":"farm-1","sensor":"done","value":1,"seq":999999}\n')
        replies = conn.makefile()
        while (reply := json.loads(replies.readline())) != {"ack": 999999}:
            assert "ack" in reply, reply  # the rpm readings ask for acks too
    deadline = time.monotonic() + 10
    while hub.stats()["store"]["stored"] < SEEDED + 1:
        assert time.monotonic() < deadline, hub.stats()["store"]
        time.sleep(0.05)


@pytest.fixture(scope="module")
def api_hub(tmp_path_factory):
    hub = HubProcess.start(tmp_path_factory.mktemp("schema"), "--store", "sqlite:small.sqlite3")
    try:
        _seed(hub)
        yield hub
    finally:
        hub.stop()


def api_schema(hub: HubProcess):
    base = f"http://127.0.0.1:{hub.ports['http']}"
    with urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=5) as response:
        document = json.load(response)
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base)
    return schema


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


#: The only 400s a schema-valid request may get: rules JSON Schema cannot say
#: (a cursor this API made, a time that exists, ``to`` after ``from``, a bucket
#: count over the range, ``points`` only with ``every=auto``, no ``limit`` on an
#: export). Any other 400 to a schema-valid request is a finding.
SEMANTIC_400 = (
    "from: ",
    "to: ",
    "cursor: ",
    "every: ",
    "points: only goes with every=auto",
    "limit: a csv export",
    "limit: a ndjson export",
)


# Not ``schemathesis.pytest.from_fixture``: it reaches into a pytest internal
# (``Function._nodeid``) that pytest 9.2 no longer has. Hypothesis drives each
# operation's strategy directly instead, in both generation modes.
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_operation_answers_as_its_document_says(api_hub, mode):
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = api_schema(api_hub)
    found = operations(schema)
    assert {op.path for op in found} >= {"/api/v1/sensors", "/api/v1/readings", "/api/v1/aggregate"}
    # positive: every check but "valid data is accepted", which SEMANTIC_400 narrows instead
    excluded = [positive_data_acceptance] if mode == "positive" else []
    for operation in found:
        if mode == "negative" and not operation.path.endswith(("sensors", "readings", "aggregate")):
            continue  # openapi.json takes no parameter: there is nothing to get wrong

        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case):
            response = case.call_and_validate(timeout=10, excluded_checks=excluded)
            if mode == "positive" and response.status_code == 400:
                body = response.json()
                assert body["error"] == "bad_parameter", body
                assert body["detail"].startswith(SEMANTIC_400), (case.as_curl_command(), body)

        check()
