"""The original worker's connect-message signature (reference §2.2)."""

import base64
import json

import pytest

from workers.signature import BadSignature, canonical_digest, public_key_b64, sign_connect_message, verify_connect_signature

PRIVKEY = bytes(range(1, 33))
VECTOR = json.loads(
    '{"auth_key":"keyme","capabilities":["llama-infer"],"cl_driver_version":null,"cl_gpus":[],"cpu_count":16,'
    '"disk_space":512000,"ln_address":"DONT_PAY_ME","ln_url":"DONT_PAY_ME","models":["TheBloke/CodeLlama-7B-Instruct-GGUF:Q4_K_M"],'
    '"nv_driver_version":null,"nv_gpu_count":null,"nv_gpus":[],"pubkey":"hL91YiYrvWlACFdI875q-lKuMXFVGB7OMbZjUcz_pLA=",'
    '"slug":"","vram":64000000000,"web_gpus":[],"worker_version":"0.3.1"}'
)
VECTOR_SIG = "Edolr6CH_EAu8OgoxFgeYvXuW12fbHSCIuM014c6JrNNTW5aLk3Vh7YM_MFcR34rbgbCnp31XX42MfMCpK_bjA=="


def signed_vector(**changes) -> dict:
    return {**VECTOR, "sig": VECTOR_SIG, **changes}


def test_it_derives_the_reference_public_key():
    assert public_key_b64(PRIVKEY) == VECTOR["pubkey"]


def test_it_hashes_the_reference_canonical_text():
    assert canonical_digest(VECTOR).hex() == "c9da1461349a764f7e78d2c6d3a0b26f2d9ffa8902b119e10ea71453d6792c02"


def test_it_verifies_the_reference_vector():
    verify_connect_signature(signed_vector())


def test_it_ignores_gpu_fields_filled_in_after_signing():
    gpus = [{"name": "RTX", "uuid": "GPU-1", "memory": 24576.0, "clock": 1500, "clock_unit": "MHz"}]
    verify_connect_signature(signed_vector(nv_gpu_count=1, nv_driver_version="535", nv_gpus=gpus, ip="1.2.3.4"))


@pytest.mark.parametrize("field, value", [("auth_key", "stolen"), ("vram", 1), ("models", []), ("ln_address", "me@x")])
def test_it_refuses_a_tampered_field(field, value):
    with pytest.raises(BadSignature):
        verify_connect_signature(signed_vector(**{field: value}))


def test_it_refuses_a_signature_by_another_key():
    other = bytes(range(2, 34))
    message = {**VECTOR, "pubkey": public_key_b64(PRIVKEY)}
    message["sig"] = sign_connect_message(message, other)
    with pytest.raises(BadSignature):
        verify_connect_signature(message)


def test_it_accepts_its_own_fresh_signatures():
    message = dict(VECTOR)
    message["sig"] = sign_connect_message(message, PRIVKEY)
    assert message["sig"] != VECTOR_SIG  # fresh aux randomness
    verify_connect_signature(message)


@pytest.mark.parametrize(
    "changes",
    [{"sig": "not base64!"}, {"sig": base64.urlsafe_b64encode(b"x" * 10).decode()}, {"pubkey": 42}, {"pubkey": base64.urlsafe_b64encode(b"\xff" * 32).decode()}],
)
def test_it_refuses_malformed_keys_and_signatures(changes):
    with pytest.raises(BadSignature):
        verify_connect_signature(signed_vector(**changes))
