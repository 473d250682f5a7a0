"""Files and artifacts in storage (django-storages), and the signed URLs workers fetch.

Storage is Django's default storage: a local folder (MEDIA_ROOT) by default, S3 or
any S3-compatible endpoint when AWS_STORAGE_BUCKET_NAME is set. Nothing is public:
a worker gets a presigned S3 URL, or with local storage a Queenbee URL signed
with django.core.signing, both expiring after SIGNED_URL_SECONDS.

Artifacts arrive from a worker in 64 KiB chunks and may be tens of GB, so they
are written part by part as they arrive, never held whole in memory. Their I/O
methods block: async callers run them in a thread.
"""

import posixpath
import tempfile
from urllib.parse import urljoin

from django.conf import settings
from django.core import signing
from django.core.files import File as DjangoFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils.crypto import salted_hmac

SIGNING_SALT = "queenbee.finetune.download"


class ArtifactError(Exception):
    """An artifact could not be stored."""


def is_s3() -> bool:
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # django-storages without boto3
        return False
    return isinstance(default_storage, S3Storage)


def realm() -> str:
    """Which storage this process writes to. A job runs only on processes with the
    same storage as the one it was created on, which could read its files."""
    if is_s3():
        return f"s3:{default_storage.bucket_name}/{default_storage.location}"
    return f"local:{getattr(default_storage, 'location', '')}"


def owner_folder(owner: str) -> str:
    """The owner's folder in storage and in model names: stable, and not the
    owner's identity (the original put user ids in public model names)."""
    return salted_hmac("queenbee.finetune.owner-folder", owner).hexdigest()[:16]


def save_upload(*, name: str, content) -> str:
    """Store an uploaded file (already on disk or in memory); returns its storage name."""
    return default_storage.save(name, content)


def open_for_reading(name: str):
    return default_storage.open(name, "rb")


def delete(name: str) -> None:
    default_storage.delete(name)


def signed_url(name: str, *, base_url: str) -> str:
    """A URL a worker can fetch without credentials, valid for SIGNED_URL_SECONDS."""
    if is_s3():
        return default_storage.url(name, expire=settings.SIGNED_URL_SECONDS)
    token = signing.dumps(name, salt=SIGNING_SALT)
    return urljoin(settings.PUBLIC_URL or base_url, reverse("finetune-signed-download", args=[token]))


def name_from_token(token: str) -> str:
    """The storage name a signed download URL stands for; raises signing.BadSignature
    (or its subclass SignatureExpired)."""
    return signing.loads(token, salt=SIGNING_SALT, max_age=settings.SIGNED_URL_SECONDS)


# --- Artifacts ------------------------------------------------------------------


class ArtifactUpload:
    """An artifact written part by part: `add` chunks (memory only), `flush` when
    `full`, then `complete` or `abort`. At most one part is held in memory."""

    def __init__(self, name: str):
        self.name = name
        self.bytes = 0
        self.upload_id = ""
        self._buffer = bytearray()

    def start(self) -> None:
        raise NotImplementedError

    def add(self, data: bytes) -> None:
        if self.bytes + len(data) > settings.FINETUNE_MAX_ARTIFACT_BYTES:
            raise ArtifactError(f"the artifact is larger than {settings.FINETUNE_MAX_ARTIFACT_BYTES} bytes")
        self._buffer += data
        self.bytes += len(data)

    @property
    def full(self) -> bool:
        return len(self._buffer) >= settings.FINETUNE_UPLOAD_PART_BYTES

    def flush(self) -> None:
        if self._buffer:
            self._write_part(bytes(self._buffer))
            self._buffer.clear()

    def _write_part(self, data: bytes) -> None:
        raise NotImplementedError

    def complete(self) -> str:
        """Finish the upload; returns the storage name it ended under."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class S3ArtifactUpload(ArtifactUpload):
    """An S3 multipart upload. django-storages' S3File streams the same way but
    completes on close() and cannot abort, and a failed job must leave no
    object behind, so this drives boto3's multipart calls directly."""

    def __init__(self, name: str):
        super().__init__(name)
        self.key = s3_key(name)
        self._parts: list[dict] = []

    def start(self) -> None:
        response = _s3_client().create_multipart_upload(
            Bucket=default_storage.bucket_name, Key=self.key, ContentType="application/octet-stream"
        )
        self.upload_id = response["UploadId"]

    def _write_part(self, data: bytes) -> None:
        number = len(self._parts) + 1
        response = _s3_client().upload_part(
            Bucket=default_storage.bucket_name, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data
        )
        self._parts.append({"ETag": response["ETag"], "PartNumber": number})

    def complete(self) -> str:
        self.flush()
        if not self._parts:
            raise ArtifactError("the artifact is empty")
        _s3_client().complete_multipart_upload(
            Bucket=default_storage.bucket_name, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self._parts}
        )
        return self.name

    def abort(self) -> None:
        abort_s3_upload(name=self.name, upload_id=self.upload_id)


class SpooledArtifactUpload(ArtifactUpload):
    """Any other storage (a local folder): parts go to a temporary file on disk,
    saved to storage once complete."""

    def start(self) -> None:
        self._file = tempfile.TemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR, suffix=".artifact")

    def _write_part(self, data: bytes) -> None:
        self._file.write(data)

    def complete(self) -> str:
        self.flush()
        if not self.bytes:
            raise ArtifactError("the artifact is empty")
        self._file.seek(0)
        try:
            return default_storage.save(self.name, DjangoFile(self._file, name=posixpath.basename(self.name)))
        finally:
            self._file.close()

    def abort(self) -> None:
        self._file.close()


def new_artifact_upload(name: str) -> ArtifactUpload:
    return S3ArtifactUpload(name) if is_s3() else SpooledArtifactUpload(name)


def abort_s3_upload(*, name: str, upload_id: str) -> None:
    """Abort a multipart upload, also one left behind by a process that died."""
    if not upload_id or not is_s3():
        return
    client = _s3_client()
    try:
        client.abort_multipart_upload(Bucket=default_storage.bucket_name, Key=s3_key(name), UploadId=upload_id)
    except client.exceptions.NoSuchUpload:
        pass


def s3_key(name: str) -> str:
    return posixpath.join(default_storage.location, name) if default_storage.location else name


def _s3_client():
    # The storage's boto3 resource is per thread; its client is what we need.
    return default_storage.connection.meta.client
