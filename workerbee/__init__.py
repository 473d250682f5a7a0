"""Workerbee: the reference Queenbee worker.

A standalone process (no Django) that connects to a Queenbee coordinator at
`ws(s)://HOST/worker`, speaks the original workerbee wire protocol (reference
§1-7) and serves OpenAI-style jobs with llama.cpp in process. Run it with
`python -m workerbee --queen-url ws://127.0.0.1:8000/worker`.
"""

# Sent as `worker_version`; compared numerically by the coordinator's
# `gpu_filter.min_version`, so it stays a dotted number above the original's 0.3.1.
VERSION = "0.4.0"
