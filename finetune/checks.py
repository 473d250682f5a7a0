"""System checks for fine-tuning and files."""

from django.conf import settings
from django.core.checks import Warning, register


@register()
def check_shared_storage(app_configs, **kwargs):
    if settings.REDIS_URL and not settings.AWS_STORAGE_BUCKET_NAME:
        return [
            Warning(
                "Several Queenbee processes (REDIS_URL) store files in a local folder.",
                hint="Set AWS_STORAGE_BUCKET_NAME (and AWS_S3_ENDPOINT_URL for S3-compatible stores) so every "
                "process sees every uploaded file and artifact, or share MEDIA_ROOT between them.",
                id="queenbee.W101",
            )
        ]
    return []
