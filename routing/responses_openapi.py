"""What /v1/openapi.json says about `/v1/responses` (the conventions of routing/openapi.py)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers

from api.openapi import COMMON_ERRORS, INFERENCE_ERRORS, error_response

from .responses_serializers import InputItemsQuerySerializer, ResponseCreateSerializer


class ResponseUsage(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    input_tokens_details = serializers.DictField(help_text="`cached_tokens` and `cache_write_tokens`: always 0.")
    output_tokens = serializers.IntegerField()
    output_tokens_details = serializers.DictField(help_text="`reasoning_tokens`: always 0.")
    total_tokens = serializers.IntegerField()


class OutputItem(serializers.Serializer):
    """A `message` (with `role` and `content`) or a `function_call` (with `call_id`, `name`, `arguments`)."""

    id = serializers.CharField()
    type = serializers.CharField(help_text="`message` or `function_call`.")
    status = serializers.CharField()
    role = serializers.CharField(required=False)
    content = serializers.ListField(child=serializers.DictField(), required=False)
    call_id = serializers.CharField(required=False)
    name = serializers.CharField(required=False)
    arguments = serializers.CharField(required=False, allow_blank=True)


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "object"}]})
class ToolChoiceOut(serializers.JSONField):
    pass


class ResponseObject(serializers.Serializer):
    """A Response: the chat completion it was generated as, in the Responses shape, with the request's settings."""

    id = serializers.CharField(help_text="Also the id of the job that generated it (`resp-…`).")
    object = serializers.CharField(help_text='Always "response".')
    created_at = serializers.IntegerField()
    status = serializers.ChoiceField(["completed", "incomplete", "failed", "in_progress"])
    completed_at = serializers.IntegerField(allow_null=True)
    background = serializers.BooleanField()
    error = serializers.DictField(allow_null=True)
    incomplete_details = serializers.DictField(allow_null=True)
    instructions = serializers.CharField(allow_null=True, allow_blank=True)
    max_output_tokens = serializers.IntegerField(allow_null=True)
    max_tool_calls = serializers.IntegerField(allow_null=True)
    model = serializers.CharField()
    output = OutputItem(many=True)
    parallel_tool_calls = serializers.BooleanField()
    previous_response_id = serializers.CharField(allow_null=True)
    prompt_cache_key = serializers.CharField(allow_null=True, allow_blank=True)
    reasoning = serializers.DictField()
    safety_identifier = serializers.CharField(allow_null=True, allow_blank=True)
    service_tier = serializers.CharField()
    store = serializers.BooleanField()
    temperature = serializers.FloatField()
    text = serializers.DictField()
    tool_choice = ToolChoiceOut()
    tools = serializers.ListField(child=serializers.DictField())
    top_logprobs = serializers.IntegerField()
    top_p = serializers.FloatField()
    truncation = serializers.CharField()
    usage = ResponseUsage(allow_null=True)
    user = serializers.CharField(allow_null=True, allow_blank=True)
    metadata = serializers.DictField()


class ResponseDeleted(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(help_text='Always "response.deleted".')
    deleted = serializers.BooleanField()


class InputItemList(serializers.Serializer):
    object = serializers.CharField(help_text='Always "list".')
    data = serializers.ListField(child=serializers.DictField(), help_text="message, function_call and function_call_output items, with ids.")
    first_id = serializers.CharField(allow_null=True)
    last_id = serializers.CharField(allow_null=True)
    has_more = serializers.BooleanField()


EVENTS = OpenApiResponse(
    OpenApiTypes.STR,
    description="With `stream: true`: server-sent events `event: <type>` / `data: {event}`: response.created, "
    "response.in_progress, then per output item response.output_item.added … response.output_item.done (with "
    "content_part and output_text events for a message, function_call_arguments events for a function call), "
    "then response.completed (response.incomplete at max_output_tokens, response.failed if the worker fails mid-stream).",
)
RESPONSE_ID = OpenApiParameter("response_id", str, OpenApiParameter.PATH, description="A Response id (`resp-…`).")
NOT_YOURS = error_response("No response with this id belongs to the caller (another key's responses are not found either).")

create_response = extend_schema(
    operation_id="createResponse", tags=["OpenAI"], request=ResponseCreateSerializer,
    responses={
        (200, "application/json"): ResponseObject, (200, "text/event-stream"): EVENTS,
        404: error_response("`previous_response_id` names no response of the caller."), **INFERENCE_ERRORS,
    },
)
retrieve_response = extend_schema(
    operation_id="getResponse", tags=["OpenAI"], parameters=[RESPONSE_ID],
    responses={200: ResponseObject, 400: error_response("`stream=true` (replaying a stream) is not supported."), 404: NOT_YOURS, **COMMON_ERRORS},
)
delete_response = extend_schema(
    operation_id="deleteResponse", tags=["OpenAI"], parameters=[RESPONSE_ID],
    responses={200: ResponseDeleted, 404: NOT_YOURS, **COMMON_ERRORS},
)
list_input_items = extend_schema(
    operation_id="listInputItems", tags=["OpenAI"], parameters=[RESPONSE_ID, InputItemsQuerySerializer],
    responses={200: InputItemList, 400: error_response("A query parameter is invalid; `param` names it."), 404: NOT_YOURS, **COMMON_ERRORS},
)
