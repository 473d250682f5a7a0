"""`gpu_filter`, Queenbee's request extension that narrows which workers may take a job.

Inference (routing) and fine-tuning (finetune) both accept it: one serializer
validates it at the edge and one function reads it, so the two APIs cannot
drift apart (issue 17: "gpu_filter parsed in routing and in finetune").
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rest_framework import serializers


class GpuFilterSerializer(serializers.Serializer):
    min_version = serializers.RegexField(r"^\d+(\.\d+){0,3}$", required=False, max_length=32)
    capabilities = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=16
    )
    pubkey = serializers.CharField(required=False, max_length=200)
    worker_id = serializers.CharField(required=False, max_length=200)
    slug = serializers.CharField(required=False, max_length=64, allow_blank=True)
    user_id = serializers.CharField(required=False, max_length=200)


@dataclass(frozen=True)
class GpuFilter:
    """What a validated `gpu_filter` asks of a worker; empty fields ask nothing."""

    min_version: str = ""
    capabilities: tuple[str, ...] = ()
    pubkey: str = ""
    slug: str = ""
    user_id: str = ""


def parse_gpu_filter(value: Mapping[str, Any] | None) -> GpuFilter:
    """A validated filter (GpuFilterSerializer's, or one stored with a fine-tune) as a GpuFilter.

    `worker_id` is the original's name for `pubkey`; `pubkey` wins when both are given.
    """
    value = value or {}
    return GpuFilter(
        min_version=value.get("min_version", ""),
        capabilities=tuple(value.get("capabilities", ())),
        pubkey=value.get("pubkey") or value.get("worker_id", ""),
        slug=value.get("slug", ""),
        user_id=value.get("user_id", ""),
    )
