"""Request validation for /v1/files and /v1/fine_tuning/jobs (the edge)."""

from rest_framework import serializers

from api.gpu_filter import GpuFilterSerializer
from api.model_names import InvalidModelName, parse_model

UPLOAD_PURPOSES = ("fine-tune", "assistants", "batch", "vision", "user_data", "evals")
# What the original worker's llama.cpp quantizer accepts; f16 and q16 skip quantizing.
Q_LEVELS = ("f32", "f16", "q16", "q2_k", "q3_k", "q4_0", "q4_1", "q4_k", "q5_0", "q5_1", "q5_k", "q6_k", "q8_0", "q8_1", "q8_k")
# OpenAI lets these three be "auto": that means our default.
AUTO_KEYS = ("n_epochs", "batch_size", "learning_rate_multiplier")


class HyperparametersSerializer(serializers.Serializer):
    """The keys the original worker reads (reference §12.3), with its code's defaults.

    The README's "Fine-tuning and files" table lists them; keep the two in step.
    """

    n_epochs = serializers.IntegerField(min_value=1, max_value=100, default=3)
    batch_size = serializers.IntegerField(min_value=1, max_value=256, default=2)
    # The worker uses it directly as the learning rate.
    learning_rate_multiplier = serializers.FloatField(min_value=1e-8, max_value=1.0, default=2.5e-5)
    accumulation_steps = serializers.IntegerField(min_value=1, max_value=1024, default=4)
    max_steps = serializers.IntegerField(min_value=-1, max_value=10_000_000, default=-1)
    lora_alpha = serializers.IntegerField(min_value=1, max_value=1024, default=64)
    lora_dropout = serializers.FloatField(min_value=0.0, max_value=0.9, default=0.05)
    training_split = serializers.FloatField(min_value=0.05, max_value=0.95, default=0.8)
    stop_eval_loss = serializers.FloatField(min_value=0.0, max_value=100.0, default=0.05)
    fine_tune_bits = serializers.ChoiceField([4, 8], default=4)
    q_level = serializers.ChoiceField(Q_LEVELS, default="q6_k")
    pad_length = serializers.IntegerField(min_value=16, max_value=32768, default=512)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("must be an object")
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({unknown[0]: [f"is not a hyperparameter; known: {', '.join(self.fields)}"]})
        data = {k: (self.fields[k].default if k in AUTO_KEYS and v == "auto" else v) for k, v in data.items()}
        if isinstance(data.get("q_level"), str):
            data["q_level"] = data["q_level"].lower()
        return super().to_internal_value(data)

    def validate_max_steps(self, value: int) -> int:
        if value == 0:
            raise serializers.ValidationError("must be -1 (train for n_epochs) or a positive number of steps")
        return value


def validated_hyperparameters(data) -> dict:
    if data is not None and not isinstance(data, dict):
        raise serializers.ValidationError("must be an object")
    serializer = HyperparametersSerializer(data=data if data is not None else {})
    if not serializer.is_valid():
        raise serializers.ValidationError(serializer.errors)
    return dict(serializer.validated_data)


class JobCreateSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=300)
    training_file = serializers.CharField(max_length=64)
    validation_file = serializers.CharField(max_length=64, required=False, allow_blank=True, allow_null=True, default="")
    hyperparameters = serializers.JSONField(required=False, default=dict)
    method = serializers.JSONField(required=False)
    suffix = serializers.RegexField(r"^[A-Za-z0-9_.\-]*$", max_length=40, required=False, allow_blank=True, allow_null=True, default="")
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, allow_null=True)
    gpu_filter = GpuFilterSerializer(required=False)

    def validate_model(self, value: str) -> str:
        try:
            model = parse_model(value)
        except InvalidModelName as exc:
            raise serializers.ValidationError(str(exc)) from None
        if model.kind != "hf" or ":" in value:
            raise serializers.ValidationError(
                "fine-tuning starts from a Hugging Face model named 'hf-user/hf-repo' (transformers weights, no ':filter')"
            )
        return value

    def validate_hyperparameters(self, value) -> dict:
        return validated_hyperparameters(value)

    def validate(self, attrs: dict) -> dict:
        method = attrs.pop("method", None)
        if method is not None:
            # OpenAI's newer shape: {"type": "supervised", "supervised": {"hyperparameters": {…}}}.
            if not isinstance(method, dict) or method.get("type") != "supervised":
                raise serializers.ValidationError({"method": ["only {'type': 'supervised'} is supported"]})
            supervised = method.get("supervised") or {}
            if not isinstance(supervised, dict):
                raise serializers.ValidationError({"method": {"supervised": ["must be an object"]}})
            nested = supervised.get("hyperparameters")
            if nested and not self.initial_data.get("hyperparameters"):
                try:
                    attrs["hyperparameters"] = validated_hyperparameters(nested)
                except serializers.ValidationError as exc:
                    raise serializers.ValidationError({"method": {"supervised": {"hyperparameters": exc.detail}}}) from None
        attrs["validation_file"] = attrs.get("validation_file") or ""
        attrs["suffix"] = attrs.get("suffix") or ""
        return attrs


class FileUploadSerializer(serializers.Serializer):
    file = serializers.FileField(max_length=255, allow_empty_file=False)
    purpose = serializers.ChoiceField(UPLOAD_PURPOSES)


class PageSerializer(serializers.Serializer):
    """`after` and `limit` of OpenAI's cursor pages."""

    after = serializers.CharField(required=False, max_length=64)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=20)


class CheckpointPageSerializer(PageSerializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=10)


class FileListSerializer(serializers.Serializer):
    purpose = serializers.CharField(required=False, max_length=32)
    after = serializers.CharField(required=False, max_length=64)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=10_000, default=10_000)
    order = serializers.ChoiceField(["asc", "desc"], required=False, default="desc")
