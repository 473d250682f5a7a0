"""ApiKey now lives in api (api/0001): Job.api_key points there and routing
forgets the model, in state only. The table `routing_apikey` stays, with its
rows and the foreign keys into it; every other reference to the model has moved
first (finetune/0003)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("api", "0001_initial"),
        ("finetune", "0003_api_key_moved_to_api"),
        ("routing", "0006_merge_0005_job_continuations_0005_storedresponse"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="job",
                    name="api_key",
                    field=models.ForeignKey(
                        blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to="api.apikey"
                    ),
                ),
                migrations.DeleteModel(name="ApiKey"),
            ],
            database_operations=[],
        ),
    ]
