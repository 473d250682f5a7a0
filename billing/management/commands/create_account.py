from django.core.management.base import BaseCommand, CommandError

from api.models import ApiKey
from billing import services


class Command(BaseCommand):
    help = "Create a billing account with credits and an API key for it; prints the key (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who the account is for.")
        parser.add_argument("--credits", type=int, default=0, help="Opening balance.")

    def handle(self, *args, name: str, credits: int, **options):
        if credits < 0:
            raise CommandError("--credits must not be negative.")
        account = services.create_account(name=name, credits=credits)
        _, raw = ApiKey.create_key(name=name, account_id=account.pk)
        self.stdout.write(raw)
