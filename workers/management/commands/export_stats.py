import json

from django.core.management.base import BaseCommand, CommandError

from workers import transfer


class Command(BaseCommand):
    help = "Write every worker identity's stats as JSON (ours, or the original coordinator's format)."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="File to write (default: stdout).")
        parser.add_argument(
            "--format",
            choices=["queenbee", "original"],
            default="queenbee",
            help='\'original\' writes {identity: {"dat": {bin: value}, "cnt": n}} as the original stored it.',
        )

    def handle(self, *args, output: str | None, format: str, **options):
        data = transfer.export_original() if format == "original" else transfer.export_stats()
        text = json.dumps(data, indent=1, sort_keys=True)
        if not output:
            self.stdout.write(text)
            return
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}") from None
        count = len(data["workers"]) if format == "queenbee" else len(data)
        self.stderr.write(f"wrote the stats of {count} identities to {output}")
