"""Gunicorn settings of a Flowdesk web process, read from the environment like the rest of the
configuration (docs/deploy.md):

    python -m gunicorn -c python:server.gunicorn_conf 'server.app:create_app()'

HOST, PORT (default 127.0.0.1:5000), WEB_CONCURRENCY (processes; default 2 × cores + 1),
FLOWDESK_WEB_THREADS (threads per process, default 2), FLOWDESK_WEB_TIMEOUT (seconds, default 60),
FORWARDED_ALLOW_IPS (proxies trusted for X-Forwarded-*, default 127.0.0.1). Flags given on the
command line win over this module (``python3 -m server run`` passes the address and process count)."""

import os

from server.config import max_upload_bytes, web_threads, web_workers

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
# Processes for the CPU-bound engine, a few threads each (measured in docs/benchmarks.md).
workers = web_workers()
worker_class = "gthread"
threads = web_threads()
timeout = int(os.environ.get("FLOWDESK_WEB_TIMEOUT", 60))
graceful_timeout = 30
keepalive = 5
accesslog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def pre_request(worker, req):
    """A body declared larger than the upload limit is answered 413 without being read, and gunicorn drains
    at most 64 kB of an unread body before reusing a connection: it would close the connection after
    announcing keep-alive, and the client's next request on it would find it gone. Such a request ends
    its connection instead, and the 413 says so (``Connection: close``)."""
    length = next((value for name, value in req.headers if name == "CONTENT-LENGTH"), "")
    if length.isdigit() and int(length) > max_upload_bytes():
        req.force_close()


def child_exit(server, worker):
    """A worker process ended: prometheus_client's multiprocess mode drops its live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
