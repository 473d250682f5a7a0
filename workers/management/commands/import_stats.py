import json
import sys

from django.core.management.base import BaseCommand, CommandError

from stats.services import BadStatsFile
from workers import transfer


class Command(BaseCommand):
    help = (
        "Merge a stats file (from export_stats, either format) into the stats, count-weighted. "
        "Records already imported are skipped, so running it twice on one file changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="JSON file to read, or - for stdin.")

    def handle(self, *args, file: str, **options):
        try:
            text = sys.stdin.read() if file == "-" else open(file, encoding="utf-8").read()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{file} is not JSON: {exc}") from None
        try:
            report = transfer.import_stats(data=data, source=file)
        except BadStatsFile as exc:
            raise CommandError(f"{file}: {exc}; nothing was imported") from None
        self.stdout.write(f"merged {report.merged} records, skipped {report.skipped_already_imported} already imported")
        if report.skipped_identities:
            self.stdout.write(
                f"skipped {len(report.skipped_identities)} keys that are not worker identities (pubkey[:slug])"
            )
