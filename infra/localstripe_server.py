"""Run localstripe (the PyPI Stripe emulator, used by tests and `make run`) the way this project needs it.

Its CLI binds every interface and pickles its whole store to one shared /tmp file on every write; here its
aiohttp app runs on 127.0.0.1 only, in memory, and exits when the process that started it goes away, so it is
never left behind. Optionally registers one webhook endpoint at start (as `POST /_config/webhooks/<name>` would).

    python infra/localstripe_server.py --port 8420 [--webhook-url URL --webhook-secret whsec_...]
"""

import argparse
import logging
import os
import sys
import threading
import time


def _exit_with_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:  # re-parented: whoever started us is gone
            os._exit(0)
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--webhook-url", default="")
    parser.add_argument("--webhook-secret", default=os.environ.get("STRIPE_WEBHOOK_SECRET", ""))
    args = parser.parse_args()

    from aiohttp import web
    from localstripe import resources
    from localstripe.server import app
    from localstripe.webhooks import register_webhook

    # No pickle: the store lives in this process's memory only (flushed with DELETE /_config/data).
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None
    if args.webhook_url:
        register_webhook("default", args.webhook_url, args.webhook_secret, None)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
