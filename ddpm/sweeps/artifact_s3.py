"""``s3://bucket/prefix``: a study's artifact store in an S3-compatible object store (AWS S3, SeaweedFS, MinIO, ...).

Built on ``optuna.artifacts.Boto3ArtifactStore``; every artifact id becomes the object key ``prefix/<id>``, so
several studies (or projects) can share one bucket. Credentials and the endpoint come from the usual AWS
environment variables, read by boto3 itself and never stored with the study, printed or logged:

    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN for temporary credentials)
    AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL   (an S3-compatible server; unset: AWS itself)
    AWS_DEFAULT_REGION or AWS_REGION          (AWS: the bucket's region)

The location holds no credentials (``s3://key:secret@bucket`` is refused). Opening the store checks that the
bucket answers (a listing under the prefix, which a prefix-scoped policy allows) with a short connect timeout and
few retries, so a wrong endpoint fails in seconds. A missing bucket is created when ``create`` (as a folder store
makes its folder: when a study records its store, and before a trial uploads); else it is an error.
Every failure is one ConfigError line naming the location, the endpoint and what to do.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

from optuna.artifacts import Boto3ArtifactStore

from ddpm.errors import ConfigError
from ddpm.redact import redact_text
from ddpm.sweeps.artifacts import register_artifact_store

S3_EXTRA = "ddpm-sweeps[s3]"
# S3 bucket naming rules (lower case, digits, '.', '-'; 3-63 characters; starts and ends alphanumeric)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")   # masked in every message, should one ever echo them
_CREDENTIALS = "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials)"


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str   # "" or "a/b": no leading or trailing '/'

    def key(self, artifact_id: str) -> str:
        return f"{self.prefix}/{artifact_id}" if self.prefix else artifact_id

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_s3_location(location: str) -> S3Location:
    """``s3://bucket/some/prefix`` -> S3Location("bucket", "some/prefix"); a malformed one is a ConfigError."""
    rest = location.split("://", 1)[1] if "://" in location else ""
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket:
        raise ConfigError(f"artifact store {redact_text(location, _env_secrets())!r}: no credentials or port in the "
                          f"location; write s3://BUCKET/PREFIX and set {_CREDENTIALS}, and AWS_ENDPOINT_URL for "
                          f"the server")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(f"artifact store {location!r}: bucket {bucket!r} is not a valid S3 bucket name (3-63 "
                          f"lower-case letters, digits, '.' or '-'); write s3://BUCKET/PREFIX")
    parts = prefix.strip("/").split("/") if prefix.strip("/") else []
    if any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"artifact store {location!r}: prefix {prefix!r} has an empty, '.' or '..' part; "
                          f"write s3://BUCKET/some/prefix")
    return S3Location(bucket, "/".join(parts))


class PrefixedBoto3ArtifactStore(Boto3ArtifactStore):
    """Optuna's S3 store with every artifact id under ``prefix/``; S3 errors other than a missing artifact
    (which Optuna reports as ArtifactNotFound) become one-line ConfigErrors naming the store."""

    def __init__(self, where: S3Location, client: Any) -> None:
        super().__init__(where.bucket, client)
        self.where = where

    def open_reader(self, artifact_id: str) -> BinaryIO:
        with _explained(self.where, self.client):
            return super().open_reader(self.where.key(artifact_id))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        with _explained(self.where, self.client):
            super().write(self.where.key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        with _explained(self.where, self.client):
            super().remove(self.where.key(artifact_id))


@register_artifact_store("s3")
def open_s3_store(location: str, create: bool) -> PrefixedBoto3ArtifactStore:
    """The store at ``s3://bucket/prefix``, its bucket checked (made when missing and ``create``)."""
    where = parse_s3_location(location)
    client = s3_client(location)
    with _explained(where, client):
        if not _bucket_exists(client, where):
            if not create:
                raise ConfigError(f"artifact store {str(where)!r}: no bucket {where.bucket!r} at {_endpoint(client)}; "
                                  f"create it (e.g. `aws s3 mb s3://{where.bucket}`) or check AWS_ENDPOINT_URL")
            _create_bucket(client, where.bucket)
    return PrefixedBoto3ArtifactStore(where, client)


def s3_client(location: str) -> Any:
    """A boto3 S3 client configured from the AWS environment variables; it fails fast: 5 s to connect, 3 attempts."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigError(f"artifact store {location!r}: boto3 is not installed; pip install '{S3_EXTRA}' "
                          f"(bash scripts/setup.sh installs it)") from None
    config = Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard", "total_max_attempts": 3})
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None   # boto3 reads only the first
    try:
        return boto3.session.Session(region_name=region).client("s3", config=config)
    except ValueError as e:   # botocore: "Invalid endpoint: ..."
        raise ConfigError(f"artifact store {location!r}: {_clean(str(e))}; set AWS_ENDPOINT_URL (or "
                          f"AWS_ENDPOINT_URL_S3) to the server's URL, e.g. http://host:8333") from None


def _bucket_exists(client: Any, where: S3Location) -> bool:
    from botocore.exceptions import ClientError

    try:  # a listing under the prefix: allowed by a policy scoped to the prefix (HeadBucket would need more)
        client.list_objects_v2(Bucket=where.bucket, Prefix=where.key(""), MaxKeys=1)
    except ClientError as e:
        if _code(e) in ("NoSuchBucket", "404"):
            return False
        raise
    return True


def _create_bucket(client: Any, bucket: str) -> None:
    region = client.meta.region_name
    kwargs = ({"CreateBucketConfiguration": {"LocationConstraint": region}}
              if region and region not in ("us-east-1", "aws-global") else {})
    try:
        client.create_bucket(Bucket=bucket, **kwargs)
    except client.exceptions.BucketAlreadyOwnedByYou:   # another worker made it a moment ago
        pass


@contextlib.contextmanager
def _explained(where: S3Location, client: Any) -> Iterator[None]:
    """Inside the block, boto3's exceptions become one-line ConfigErrors (Optuna's ArtifactNotFound passes)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as err:
        raise ConfigError(f"artifact store {str(where)!r}: {explain_s3_error(err, where, client)}") from None


def explain_s3_error(err: Exception, where: S3Location, client: Any) -> str:
    """What went wrong and what to do, in one line without secrets."""
    from botocore import exceptions as bx

    endpoint = _endpoint(client)
    if isinstance(err, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return f"no AWS credentials for {endpoint}; set {_CREDENTIALS}"
    if isinstance(err, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        return (f"cannot reach the S3 endpoint {endpoint} ({type(err).__name__}); check AWS_ENDPOINT_URL "
                f"(or AWS_ENDPOINT_URL_S3) and that the server runs")
    if isinstance(err, bx.ClientError):
        code = _code(err)
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                    "ExpiredToken", "AllAccessDisabled"):
            return (f"access denied ({code}) to bucket {where.bucket!r} at {endpoint}; check {_CREDENTIALS} "
                    f"and the bucket's policy")
        if code in ("NoSuchBucket", "404"):
            return f"no bucket {where.bucket!r} at {endpoint}; create it or check AWS_ENDPOINT_URL"
        if code in ("BucketAlreadyExists", "InvalidBucketName"):
            return f"bucket {where.bucket!r} cannot be created at {endpoint} ({code}); choose another bucket name"
        return f"S3 error {code} at {endpoint}: {_clean(str(err))}"
    return f"S3 error at {endpoint}: {_clean(str(err))}"


def _code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _endpoint(client: Any) -> str:
    return redact_text(str(client.meta.endpoint_url), _env_secrets())


def _env_secrets() -> list[str]:
    return [v for v in (os.environ.get(k) for k in SECRET_ENV) if v]


def _clean(text: str) -> str:
    """One line, secrets masked."""
    return redact_text(" ".join(text.split()), _env_secrets())
