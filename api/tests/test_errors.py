"""Every error leaves in OpenAI's envelope; one the code did not expect is a 500
whose traceback is in the log, never dressed up as an outage."""

import logging

from api.errors import ChannelLayerDown, exception_handler


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
