"""What /v1/openapi.json says about /v1/files and /v1/fine_tuning/jobs (drf-spectacular).

Request schemas are the validating serializers; the reply serializers below
describe what selectors render (schemathesis checks both, routing/tests/test_openapi.py).
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers

from api.openapi import COMMON_ERRORS, INFERENCE_ERRORS, error_response

from .serializers import FileUploadSerializer, JobCreateSerializer

BAD_REQUEST = error_response("The request is invalid; `param` names the field.")
NOT_FOUND = error_response("No such object among the caller's own.")
UNSUPPORTED = error_response("The body is not of a supported content type.")


# --- Replies ------------------------------------------------------------------------------


class FileObject(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(help_text='Always "file".')
    bytes = serializers.IntegerField()
    created_at = serializers.IntegerField()
    filename = serializers.CharField()
    purpose = serializers.CharField()
    status = serializers.CharField()
    status_details = serializers.CharField(allow_null=True)
    expires_at = serializers.IntegerField(allow_null=True)


class Page(serializers.Serializer):
    object = serializers.CharField(help_text='Always "list".')
    has_more = serializers.BooleanField()
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True)


class FileList(Page):
    data = FileObject(many=True)


class DeletedFile(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(help_text='Always "file".')
    deleted = serializers.BooleanField()


class JobError(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    param = serializers.CharField(allow_null=True)


class Job(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(help_text='Always "fine_tuning.job".')
    created_at = serializers.IntegerField()
    finished_at = serializers.IntegerField(allow_null=True)
    model = serializers.CharField()
    fine_tuned_model = serializers.CharField(allow_null=True, help_text="`user:<owner folder>/<base>:<q_level>:<job id>` once succeeded.")
    organization_id = serializers.CharField()
    status = serializers.ChoiceField(["validating_files", "queued", "running", "succeeded", "failed", "cancelled"])
    hyperparameters = serializers.JSONField()
    method = serializers.JSONField()
    training_file = serializers.CharField()
    validation_file = serializers.CharField(allow_null=True)
    result_files = serializers.ListField(child=serializers.CharField(), help_text="The LoRA adapter and GGUF files.")
    trained_tokens = serializers.IntegerField(allow_null=True)
    error = JobError(allow_null=True)
    seed = serializers.IntegerField()
    suffix = serializers.CharField(allow_null=True)
    estimated_finish = serializers.IntegerField(allow_null=True)
    integrations = serializers.ListField(child=serializers.JSONField())
    metadata = serializers.JSONField(allow_null=True)


class JobList(Page):
    data = Job(many=True)


class Event(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(help_text='Always "fine_tuning.job.event".')
    created_at = serializers.IntegerField()
    level = serializers.CharField()
    message = serializers.CharField()
    data = serializers.JSONField(allow_null=True, help_text="The worker's frame, when the event is one.")
    type = serializers.CharField()


class EventList(Page):
    data = Event(many=True)


class Checkpoint(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(help_text='Always "fine_tuning.job.checkpoint".')
    created_at = serializers.IntegerField()
    fine_tuning_job_id = serializers.CharField()
    fine_tuned_model_checkpoint = serializers.CharField()
    step_number = serializers.IntegerField()
    metrics = serializers.JSONField()


class CheckpointList(Page):
    data = Checkpoint(many=True)


# --- Parameters -----------------------------------------------------------------------------


def _page_parameters(default_limit: int, max_limit: int = 100) -> list[OpenApiParameter]:
    return [
        OpenApiParameter("after", str, OpenApiParameter.QUERY, description="The id of the last object of the previous page."),
        OpenApiParameter("limit", int, OpenApiParameter.QUERY, description=f"1 to {max_limit}; default {default_limit}."),
    ]


FILE_ID = OpenApiParameter("file_id", str, OpenApiParameter.PATH)
JOB_ID = OpenApiParameter("job_id", str, OpenApiParameter.PATH)
LISTING_ERRORS = {400: BAD_REQUEST, 404: error_response("`after` names no object of this list."), **COMMON_ERRORS}
JOB_ERRORS = {404: NOT_FOUND, **COMMON_ERRORS}

# --- One decorator per operation ----------------------------------------------------------------

list_files = extend_schema(
    operation_id="listFiles", tags=["Files"],
    parameters=[
        OpenApiParameter("purpose", str, OpenApiParameter.QUERY),
        *_page_parameters(10_000, 10_000),
        OpenApiParameter("order", str, OpenApiParameter.QUERY, enum=["asc", "desc"]),
    ],
    responses={200: FileList, **LISTING_ERRORS},
)
upload_file = extend_schema(
    operation_id="createFile", tags=["Files"], request={"multipart/form-data": FileUploadSerializer},
    responses={
        200: FileObject, 400: error_response("Invalid form, or a training file whose first bad line is named."),
        413: error_response("The file is larger than FILES_MAX_BYTES."), 415: UNSUPPORTED, **COMMON_ERRORS,
    },
)
retrieve_file = extend_schema(operation_id="retrieveFile", tags=["Files"], parameters=[FILE_ID], responses={200: FileObject, 404: NOT_FOUND, **COMMON_ERRORS})
delete_file = extend_schema(operation_id="deleteFile", tags=["Files"], parameters=[FILE_ID], responses={200: DeletedFile, 404: NOT_FOUND, **COMMON_ERRORS})
file_content = extend_schema(
    operation_id="downloadFile", tags=["Files"], parameters=[FILE_ID],
    responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: NOT_FOUND, **COMMON_ERRORS},
)
create_job = extend_schema(
    operation_id="createFineTuningJob", tags=["Fine-tuning"], request=JobCreateSerializer,
    responses={200: Job, 400: BAD_REQUEST, 415: UNSUPPORTED, 429: INFERENCE_ERRORS[429], **COMMON_ERRORS},
)
list_jobs = extend_schema(
    operation_id="listPaginatedFineTuningJobs", tags=["Fine-tuning"], parameters=_page_parameters(20),
    responses={200: JobList, **LISTING_ERRORS},
)
retrieve_job = extend_schema(operation_id="retrieveFineTuningJob", tags=["Fine-tuning"], parameters=[JOB_ID], responses={200: Job, **JOB_ERRORS})
cancel_job = extend_schema(
    operation_id="cancelFineTuningJob", tags=["Fine-tuning"], parameters=[JOB_ID], request=None,
    responses={200: Job, 400: error_response("The job already succeeded or failed."), **JOB_ERRORS},
)
list_events = extend_schema(
    operation_id="listFineTuningEvents", tags=["Fine-tuning"], parameters=[JOB_ID, *_page_parameters(20)],
    responses={200: EventList, **LISTING_ERRORS},
)
list_checkpoints = extend_schema(
    operation_id="listFineTuningJobCheckpoints", tags=["Fine-tuning"], parameters=[JOB_ID, *_page_parameters(10)],
    responses={200: CheckpointList, **LISTING_ERRORS},
)
