"""Start the test LMS: `python -m tests.openedx.lms.serve --fd N --data DIR`.

The caller binds and listens on a loopback socket and hands it over as file descriptor N, so
the LMS's address is known before it starts and a request made before it is ready waits in
the socket's backlog instead of failing. It creates its SQLite database, then serves with
threads (the tool's AGS calls arrive concurrently) until it is terminated.
"""

from __future__ import annotations

import argparse
import os
import socket
import socketserver
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    sock = socket.socket(fileno=args.fd)
    host, port = sock.getsockname()[:2]
    base_url = f"http://{host}:{port}"
    os.environ["OPENEDX_HARNESS_BASE_URL"] = base_url
    os.environ["OPENEDX_HARNESS_DATA_DIR"] = args.data
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.openedx.lms.settings"

    import django
    from django.core.management import call_command
    from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer
    from django.core.wsgi import get_wsgi_application

    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)

    class Server(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = Server((host, port), WSGIRequestHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_address = (host, port)
    server.server_name, server.server_port = host, port
    server.setup_environ()
    server.set_app(get_wsgi_application())
    print(f"Open edX test LMS on {base_url}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
