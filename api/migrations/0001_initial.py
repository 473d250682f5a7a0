"""ApiKey moves from routing to api in Django's state only: its table stays
`routing_apikey` (Meta.db_table), so no row and no column changes.

The database side is empty: on an existing database the table is there, and on a
fresh one routing/0001 and routing/0003 have just made it. routing/0007 then
points Job.api_key here and drops the old model from routing's state, after
finetune/0003 has moved FineTuningJob.api_key.
"""

import django.db.models.deletion
from django.db import migrations, models


def rename_content_type(apps, schema_editor, *, old: str = "routing", new: str = "api") -> None:
    """Keep the model's content type (and so its admin permissions and log entries)."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label=new, model="apikey").exists():
        ContentType.objects.filter(app_label=old, model="apikey").update(app_label=new)


def restore_content_type(apps, schema_editor) -> None:
    rename_content_type(apps, schema_editor, old="api", new="routing")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("billing", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("routing", "0003_apikey_account"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ApiKey",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=200)),
                        ("prefix", models.CharField(help_text="First characters, to tell keys apart.", max_length=16)),
                        ("key_hash", models.CharField(max_length=64, unique=True)),
                        ("is_active", models.BooleanField(default=True)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "account",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="api_keys",
                                to="billing.account",
                            ),
                        ),
                    ],
                    options={"verbose_name": "API key", "db_table": "routing_apikey"},
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(rename_content_type, restore_content_type),
    ]
