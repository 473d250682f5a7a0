from django.core.management.base import BaseCommand

from routing.models import StoredResponse


class Command(BaseCommand):
    help = "Delete stored /v1/responses answers older than RESPONSES_KEEP_DAYS (run it from cron)."

    def handle(self, *args, **options):
        deleted, _ = StoredResponse.objects.expired().delete()
        self.stdout.write(f"{deleted} expired stored responses deleted")
