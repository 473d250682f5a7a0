from django.core.management.base import BaseCommand

from api.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key and print it (it is stored hashed and cannot be shown again)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who or what the key is for.")

    def handle(self, *args, name: str, **options):
        _, raw = ApiKey.create_key(name=name)
        self.stdout.write(raw)
