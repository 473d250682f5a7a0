"""The connect message's additive fields: `features` and `context_length` (workers/protocol.py)."""

import pytest

from workers.protocol import KNOWN_FEATURES, ProtocolError, implied_features, parse_connect_message

HELLO = {"worker_version": "0.3.1", "capabilities": ["llama-infer"], "cpu_count": 4}


def test_it_knows_every_feature_of_the_protocol():
    assert set(KNOWN_FEATURES) >= {"verify", "tools", "json_schema", "logprobs", "n", "vision", "continue"}


def test_it_keeps_the_known_features_a_worker_announces_and_ignores_the_rest():
    info = parse_connect_message({**HELLO, "features": ["tools", "teleport", "n", "tools"]})
    assert info.features == ("tools", "n")


def test_an_original_worker_without_the_field_is_assumed_to_have_no_feature():
    assert parse_connect_message(HELLO).features == implied_features("0.3.1") == ()


def test_an_unparsable_version_implies_no_feature():
    assert implied_features("web") == ()


def test_it_reads_the_context_length():
    assert parse_connect_message({**HELLO, "context_length": 8192}).context_length == 8192
    assert parse_connect_message(HELLO).context_length == 0


@pytest.mark.parametrize("value", ["8k", -1, True, 2**40])
def test_a_bad_context_length_is_a_protocol_error(value):
    with pytest.raises(ProtocolError, match="context_length"):
        parse_connect_message({**HELLO, "context_length": value})
