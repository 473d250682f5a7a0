"""The embedded default's secret key: generated on first run, kept in the data folder.

Imported by settings.py, so it imports nothing from Django's configured parts.
"""

import os
import secrets
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

# Django's own deploy check (security.W009) asks for at least 50 characters;
# token_urlsafe(50) gives 67 from 64 symbols.
KEY_BYTES = 50


def read_or_create(path: Path) -> str:
    """The key kept in `path`, generated and written there first if there is none.

    The key is written whole to a private temporary file (mode 0600) beside
    `path`, then hard-linked to `path`. Linking fails if `path` exists, so of two
    processes starting at once exactly one link wins, and the loser reads the
    winner's key: both end with one key, and none ever reads half a key.
    """
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(KEY_BYTES) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process was first: its key is the one
    finally:
        os.unlink(temporary)
    return _read(path)


def _read(path: Path) -> str:
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"{path} (the generated SECRET_KEY) is empty: delete it to generate a new key, or set SECRET_KEY.")
    return key
