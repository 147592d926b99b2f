"""A local S3-compatible server for the tests: moto in server mode on loopback, so the store code
talks the real S3 protocol (signed HTTP requests through s3fs/aiobotocore), with no cloud account.

    with S3Server() as s3:
        location = s3.location("bigearthnet.zarr")   # s3://ingest-test/bigearthnet.zarr
"""

from __future__ import annotations

import logging
import socket
from types import TracebackType
from typing import Any

from ..store.location import StoreLocation

BUCKET = "ingest-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """moto's S3 on ``127.0.0.1`` with one bucket; ``storage_options`` reach it with s3fs."""

    def __init__(self, bucket: str = BUCKET) -> None:
        from moto.server import ThreadedMotoServer  # a test dependency only

        self.bucket = bucket
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def storage_options(self) -> dict[str, Any]:
        return {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
        }

    def location(self, name: str) -> StoreLocation:
        return StoreLocation(f"s3://{self.bucket}/{name}", self.storage_options)

    def __enter__(self) -> S3Server:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request
        self._server.start()
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=self.bucket)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.stop()
