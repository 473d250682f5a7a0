"""The process: its per-process tasks (started and stopped in one place, with
the SIGTERM drain), the threads its database calls run on, its caches, the one
place that turns events into metrics and log lines, and the caller's address.

The bottom of the server's layers: it imports no app (see `.importlinter`).
"""
