"""A real S3-compatible server on localhost for tests (moto's standalone server), and the
environment that points fsspec/s3fs at it. The cloud itself is what this machine cannot have;
the protocol, the client library and our code are real."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def s3_server(bucket: str = "books") -> Iterator[dict[str, str]]:
    """Start the server, create `bucket`, and yield the environment a client needs (also set in
    os.environ while the block runs, so subprocesses started inside inherit it)."""
    pytest.importorskip("s3fs", reason="s3fs is a test dependency (pip install -e '.[test]')")
    server_module = pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import urllib.request

        import fsspec

        # moto keeps its buckets per process, not per server: start from an empty store, and drop
        # fsspec's cached clients, which point at an earlier server's port.
        urllib.request.urlopen(urllib.request.Request(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", method="POST"))
        fsspec.get_filesystem_class("s3").clear_instance_cache()
        fsspec.filesystem("s3").mkdir(bucket)
        yield env
    finally:
        fsspec.get_filesystem_class("s3").clear_instance_cache()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
