from django.core.management.base import BaseCommand, CommandError

from billing import services
from billing.models import Account


class Command(BaseCommand):
    help = "Add credits to an account (a ledger row records it)."

    def add_arguments(self, parser):
        parser.add_argument("account_id", type=int)
        parser.add_argument("credits", type=int)
        parser.add_argument("--note", default="")

    def handle(self, *args, account_id: int, credits: int, note: str, **options):
        if not Account.objects.filter(pk=account_id).exists():
            raise CommandError(f"No account {account_id}.")
        entry = services.top_up(account_id=account_id, amount=credits, note=note)
        self.stdout.write(f"balance {entry.balance_after}")
