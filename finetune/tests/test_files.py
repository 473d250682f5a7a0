"""/v1/files on local storage and on S3 (moto server), through the official SDK and raw HTTP."""

import io

import openai
import pytest

from finetune.models import File

from .conftest import FILES_MAX_BYTES, TRAINING


@pytest.fixture(params=["local", "s3"])
def api(request):
    return request.getfixturevalue(f"{request.param}_api")


def test_it_stores_lists_reads_and_deletes_a_file(api):
    created = api.openai.files.create(file=("train.jsonl", io.BytesIO(TRAINING)), purpose="fine-tune")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.bytes, created.filename, created.purpose, created.status) == (len(TRAINING), "train.jsonl", "fine-tune", "processed")

    assert api.openai.files.retrieve(created.id).bytes == len(TRAINING)
    assert [f.id for f in api.openai.files.list()] == [created.id]
    assert api.openai.files.content(created.id).content == TRAINING

    deleted = api.openai.files.delete(created.id)
    assert deleted.deleted is True
    assert list(api.openai.files.list()) == []
    with pytest.raises(openai.NotFoundError):
        api.openai.files.retrieve(created.id)


def test_the_bytes_are_in_the_bucket_under_the_owners_folder(s3_api, s3):
    file_id = s3_api.upload(TRAINING).json()["id"]
    name = File.objects.get(public_id=file_id).storage_name
    assert name.endswith(file_id) and "/" in name
    assert s3.get_object(Bucket=s3.bucket, Key=name)["Body"].read() == TRAINING
    s3_api.http.delete(f"/v1/files/{file_id}")
    assert s3.list_objects_v2(Bucket=s3.bucket, Prefix=name)["KeyCount"] == 0


def test_two_uploads_of_the_same_size_are_two_files(local_api):
    """The original derived the id from the size, so equal-sized files overwrote each other."""
    first = local_api.upload(TRAINING).json()["id"]
    second = local_api.upload(TRAINING.replace(b"Say", b"say")).json()["id"]
    assert first != second
    assert local_api.http.get(f"/v1/files/{first}/content").content == TRAINING


def test_another_owner_gets_a_404_for_every_operation(local_api, db_access):
    from .conftest import Api, new_key

    file_id = local_api.upload(TRAINING).json()["id"]
    other = Api(local_api.server, new_key())
    for method, path in [("GET", ""), ("GET", "/content"), ("DELETE", "")]:
        response = other.http.request(method, f"/v1/files/{file_id}{path}")
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "not_found"
    assert other.http.get("/v1/files").json()["data"] == []
    assert local_api.http.get(f"/v1/files/{file_id}").status_code == 200


def test_purpose_comes_from_the_form_and_filters_the_list(local_api):
    local_api.upload(TRAINING)
    other = local_api.upload(b"any bytes at all", purpose="user_data", filename="notes.txt").json()
    assert other["purpose"] == "user_data"
    listed = local_api.http.get("/v1/files", params={"purpose": "user_data"}).json()
    assert [f["id"] for f in listed["data"]] == [other["id"]]


def test_a_bad_training_file_is_refused_naming_the_line(local_api):
    response = local_api.upload(TRAINING + b"{oops\n")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_training_file" and error["param"] == "file"
    assert "line 11 is not valid JSON" in error["message"]


def test_a_file_over_the_limit_is_a_413(local_api):
    response = local_api.upload(b"x" * (FILES_MAX_BYTES + 1), purpose="user_data")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"


def test_an_unknown_purpose_or_a_missing_file_is_a_400(local_api):
    response = local_api.upload(TRAINING, purpose="wishes")
    assert response.status_code == 400 and response.json()["error"]["param"] == "purpose"
    response = local_api.http.post("/v1/files", data={"purpose": "fine-tune"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "file"


def test_the_list_pages_with_after_and_limit(local_api):
    ids = [local_api.upload(b"page %d" % n, purpose="user_data").json()["id"] for n in range(3)]
    first = local_api.http.get("/v1/files", params={"limit": 2}).json()
    assert [f["id"] for f in first["data"]] == ids[:0:-1] and first["has_more"] is True
    rest = local_api.http.get("/v1/files", params={"limit": 2, "after": first["last_id"]}).json()
    assert [f["id"] for f in rest["data"]] == ids[:1] and rest["has_more"] is False


def test_a_malformed_upload_gets_openais_envelope_not_a_bare_400(local_api):
    """Twisted would parse multipart bodies itself and answer a bare 400; Django answers."""
    response = local_api.http.post("/v1/files", content=b"--b--\r\n", headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"
