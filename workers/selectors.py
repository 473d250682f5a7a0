"""Reading the live workers for the public: anonymised, with their stats."""

from typing import Any

from django.db.models import Q

from stats import selectors as stats_selectors

from .liveness import live_connections
from .models import Connection
from .services import hash_secret


def worker_detail(*, query: str = "", caller_token: str = "") -> list[dict[str, Any]]:
    """Live workers, anonymised: what they run and how fast, never who they are.

    `query` keeps only the workers an identifier owns: a pubkey or identity, the
    auth key the worker connected with, or a user id (`uid:<id>`, as the original
    matched it). `query="user"` means the workers connected with the caller's own
    API key (`caller_token`).
    """
    connections = live_connections()
    # Trust states are shown only to whoever proves ownership with a secret (an
    # auth key, or the caller's own API key): a pubkey is public.
    owner_hashes = {hash_secret(caller_token)} if query == "user" and caller_token else {hash_secret(query)} if query else set()
    if query == "user":
        connections = (
            connections.filter(worker__owner_key_hash=hash_secret(caller_token)) if caller_token else connections.none()
        )
    elif query:
        connections = connections.filter(
            Q(worker__pubkey=query)
            | Q(worker__identity=query)
            | Q(worker__owner_key_hash__in=[hash_secret(query), hash_secret(f"uid:{query}")])
        )
    rows = list(
        connections.values_list(
            "state", "worker_id", "worker__worker_version", "capabilities_text", "worker__gpu_count", "context_length",
            "worker__owner_key_hash", "worker__trust_state", "worker__trust_reason",
        )
    )
    figures = stats_selectors.public_figures(worker_ids={row[1] for row in rows})
    entries = []
    for state, worker_id, version, capabilities_text, gpu_count, context_length, owner, trust, reason in rows:
        owned = {"trust": trust, "trust_reason": reason} if owner and owner in owner_hashes else {}
        measured = figures[worker_id]
        entries.append(
            {
                **owned,
                "busy": state != Connection.State.FREE,
                "worker_version": version,
                "capabilities": [c for c in capabilities_text.split(",") if c],
                "gpu_cnt": gpu_count,
                "context_length": context_length,
                "perf": measured.perf,
                "cnt": measured.inferences,
                "punished": measured.punished,
            }
        )
    # Free before busy (as the original listed them), then fastest first: an
    # order that says nothing about when or where each worker connected.
    entries.sort(key=lambda e: (e["busy"], e["perf"] is None, e["perf"] or 0, e["worker_version"]))
    return entries
