"""An S3-compatible server on loopback for the storage tests: moto's server in a child process (a real HTTP
server speaking the S3 protocol; nothing in kiban or delta-rs is mocked). One server per test session; each test
gets a bucket of its own."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

KEY, SECRET = "kiban-test-key", "kiban-test-secret"  # moto takes any; kiban reads them from the environment
CREDENTIALS = {"KIBAN_TEST_S3_KEY": KEY, "KIBAN_TEST_S3_SECRET": SECRET}


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str

    def yml(self, prefix: str = "lake", warehouse: str | None = None) -> str:
        """A ``storage:`` block of kiban.yml for this bucket."""
        lines = [f"storage:\n  lake: s3://{self.bucket}/{prefix}\n"]
        if warehouse:
            lines.append(f"  warehouse: s3://{self.bucket}/{warehouse}\n")
        lines.append(f"  endpoint_url: {self.endpoint}\n  region: us-east-1\n"
                     "  access_key_id: env:KIBAN_TEST_S3_KEY\n  secret_access_key: env:KIBAN_TEST_S3_SECRET\n")
        return "".join(lines)

    def options(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ALLOW_HTTP": "true", "AWS_CONDITIONAL_PUT": "etag"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("moto.server")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the S3 test server did not start") from None
            time.sleep(0.1)
    try:
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3:
    import boto3

    bucket = "kiban-" + secrets.token_hex(4)
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    monkeypatch.setenv("KIBAN_TEST_S3_KEY", KEY)
    monkeypatch.setenv("KIBAN_TEST_S3_SECRET", SECRET)
    os.environ.pop("AWS_PROFILE", None)
    return S3(s3_endpoint, bucket)


def kiban(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command line in a child process, with the storage credentials in its environment."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "PYTHONIOENCODING": "utf-8",
           **CREDENTIALS}
    return subprocess.run([sys.executable, "-m", "kiban", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
