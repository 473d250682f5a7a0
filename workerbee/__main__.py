"""`python -m workerbee`: run the reference worker until SIGINT or SIGTERM.

`python -m workerbee sign-challenge TEXT` signs the owner page's challenge (challenge.py).
"""

import logging
import os
import signal
import sys

from .config import load_config
from .connection import Worker


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["sign-challenge"]:
        from . import challenge

        return challenge.main(args[1:])
    config = load_config(argv)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = Worker(config)
    logging.getLogger("workerbee").info("identity %s, models in %s, config in %s", worker.identity, worker.places.models_dir, config.config_path)

    def on_signal(signum, _frame):
        if worker.stopping:  # a second signal: stop now, whatever is running
            os._exit(128 + signum)
        logging.getLogger("workerbee").info("%s: finishing up (send it again to quit at once)", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
