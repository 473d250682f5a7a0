"""OpenAI's error envelope, built in api/errors.py and nowhere else. Every error leaves in it;
one the code did not expect is a 500 whose traceback is in the log, never dressed up as an outage."""

import logging
import re
from pathlib import Path

from rest_framework import exceptions as drf

from api.errors import ChannelLayerDown, WorkerTimedOut, error_body, exception_handler

ROOT = Path(__file__).resolve().parents[2]
ENVELOPE_LITERAL = re.compile(r"""["']error["']\s*:\s*\{""")
BUILDER = Path("api/errors.py")


def test_it_renders_a_domain_error_with_its_status_and_code():
    response = exception_handler(WorkerTimedOut("Timed out: no token in 10 s.", retry_after=3), {})
    assert response.status_code == 504 and response["Retry-After"] == "3"
    assert response.data == error_body("Timed out: no token in 10 s.", type="timeout", code="worker_timeout")


def test_it_names_the_first_invalid_field_by_its_dotted_path():
    error = drf.ValidationError({"messages": [{}, {"role": ["Not a valid choice."]}]})
    response = exception_handler(error, {})
    assert response.status_code == 400
    assert response.data["error"]["param"] == "messages.1.role"
    assert response.data["error"]["message"] == "messages.1.role: Not a valid choice."


def test_an_unknown_url_is_a_404_in_the_envelope(http):
    response = http.get("/v1/nothing-here")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_no_other_server_module_writes_an_envelope_of_its_own():
    """Tests may spell out envelopes to compare with; the server builds them with error_body."""
    offenders = []
    packages = [p for p in ROOT.iterdir() if (p / "__init__.py").exists()]  # not .venv's
    for path in (path for package in packages for path in package.glob("**/*.py")):
        relative = path.relative_to(ROOT)
        if relative == BUILDER or "tests" in relative.parts or relative.parts[0] in ("bench", "testkit", "workerbee"):
            continue
        if ENVELOPE_LITERAL.search(path.read_text(encoding="utf-8")):
            offenders.append(str(relative))
    assert offenders == []


class SomeView:
    pass


def test_the_channel_layer_being_down_is_a_503_naming_it():
    response = exception_handler(ChannelLayerDown("Queenbee cannot reach its workers right now."), {"view": SomeView()})
    assert response.status_code == 503
    assert response.data["error"]["code"] == "channel_layer_unavailable"
    assert response.data["error"]["type"] == "service_unavailable"


def test_a_bug_is_a_500_in_the_envelope_with_its_traceback_logged(caplog):
    try:
        {}["missing"]
    except KeyError as exc:
        bug = exc
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        response = exception_handler(bug, {"view": SomeView()})
    assert response.status_code == 500
    assert response.data == {"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": None, "code": None}}
    [record] = [r for r in caplog.records if r.name == "api.errors"]
    assert "SomeView" in record.getMessage() and record.exc_info[0] is KeyError
