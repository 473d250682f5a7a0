"""/v1/files and /v1/fine_tuning/jobs, in OpenAI's shapes. Views translate only.

Files are sync views (uploads and downloads are blocking storage I/O, run in a
thread per request by Django); jobs are async views, because creating one kicks
this process's scheduler.
"""

from asgiref.sync import sync_to_async
from django.core import signing
from django.http import FileResponse
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from api.api_view import ApiView
from api.errors import json_error
from billing import services as billing

from . import openapi, selectors, services, storage
from .scheduler import scheduler
from .serializers import CheckpointPageSerializer, FileListSerializer, FileUploadSerializer, JobCreateSerializer, PageSerializer

OCTETS = "application/octet-stream"


def validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def owner(request) -> str:
    return services.owner_of(request.user)


class FilesView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @openapi.list_files
    def get(self, request):
        query = validated(FileListSerializer, request.query_params)
        return Response(selectors.list_files(owner=owner(request), **query))

    @openapi.upload_file
    def post(self, request):
        data = validated(FileUploadSerializer, request.data)
        file = services.upload_file(owner=owner(request), uploaded=data["file"], purpose=data["purpose"])
        return Response(selectors.file_object(file))


class FileView(APIView):
    @openapi.retrieve_file
    def get(self, request, file_id: str):
        return Response(selectors.file_object(selectors.get_file(owner=owner(request), file_id=file_id)))

    @openapi.delete_file
    def delete(self, request, file_id: str):
        services.delete_file(owner=owner(request), file_id=file_id)
        return Response({"id": file_id, "object": "file", "deleted": True})


class AnyAccept(BaseContentNegotiation):
    """Bytes are bytes whatever the client accepts (the SDK asks for
    application/binary); errors are still JSON."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class FileContentView(APIView):
    content_negotiation_class = AnyAccept

    @openapi.file_content
    def get(self, request, file_id: str):
        file = selectors.get_file(owner=owner(request), file_id=file_id)
        return FileResponse(storage.open_for_reading(file.storage_name), as_attachment=True, filename=file.filename, content_type=OCTETS)


def signed_download(request, token: str):
    """A file or model for a worker, by signed expiring URL (local storage only;
    with S3 workers get presigned S3 URLs)."""
    try:
        name = storage.name_from_token(token)
    except signing.SignatureExpired:
        return json_error(403, "This download link has expired.", type="invalid_request_error", code="link_expired")
    except signing.BadSignature:
        return json_error(403, "This download link is not valid.", type="invalid_request_error", code="bad_link")
    try:
        return FileResponse(storage.open_for_reading(name), as_attachment=True, filename=name.rsplit("/", 1)[-1], content_type=OCTETS)
    except FileNotFoundError:
        return json_error(404, "This file no longer exists.", type="invalid_request_error", code="not_found")


class JobsView(ApiView):
    @openapi.list_jobs
    async def get(self, request):
        page = validated(PageSerializer, request.query_params)
        return Response(await sync_to_async(selectors.list_jobs)(owner=owner(request), **page))

    @openapi.create_job
    async def post(self, request):
        data = validated(JobCreateSerializer, request.data)
        await billing.admit(request.user)  # 429 without credit (or over the rate), as for inference
        job = await sync_to_async(services.create_job)(
            owner=owner(request), data=data, base_url=request.build_absolute_uri("/"),
            api_key_id=request.user.api_key_id, bill_to=request.user.bill_to,
        )
        scheduler.kick()
        return Response(await sync_to_async(selectors.get_job)(owner=job.owner, job_id=job.public_id))


class JobView(ApiView):
    @openapi.retrieve_job
    async def get(self, request, job_id: str):
        return Response(await sync_to_async(selectors.get_job)(owner=owner(request), job_id=job_id))


class JobCancelView(ApiView):
    @openapi.cancel_job
    async def post(self, request, job_id: str):
        job = await sync_to_async(services.cancel_job)(owner=owner(request), job_id=job_id)
        return Response(await sync_to_async(selectors.get_job)(owner=job.owner, job_id=job.public_id))


class JobEventsView(ApiView):
    @openapi.list_events
    async def get(self, request, job_id: str):
        page = validated(PageSerializer, request.query_params)
        return Response(await sync_to_async(selectors.list_events)(owner=owner(request), job_id=job_id, **page))


class JobCheckpointsView(ApiView):
    @openapi.list_checkpoints
    async def get(self, request, job_id: str):
        page = validated(CheckpointPageSerializer, request.query_params)
        return Response(await sync_to_async(selectors.list_checkpoints)(owner=owner(request), job_id=job_id, **page))

