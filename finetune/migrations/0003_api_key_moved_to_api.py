"""FineTuningJob.api_key follows ApiKey to api (api/0001), in state only: the
column and its foreign key still point at the same table, routing_apikey."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("api", "0001_initial"),
        ("finetune", "0002_fine_tune_payer"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="finetuningjob",
                    name="api_key",
                    field=models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="api.apikey",
                    ),
                ),
            ],
            database_operations=[],
        ),
    ]
