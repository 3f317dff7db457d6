"""S3 error mapping: every failed call becomes a `TaskError` naming `s3://bucket/key`, the operation and the cause,
with a distinct reason per class (see the package docstring).

botocore is imported when an error is translated, not when this module is imported: an agent that runs no S3 task
never loads it.
"""

from __future__ import annotations

import functools
from typing import Any

from agent.models import TaskError

S3_NOT_FOUND = "S3NotFound"
S3_ACCESS_DENIED = "S3AccessDenied"
S3_UNAVAILABLE = "S3Unavailable"
S3_OBJECT_CHANGED = "S3ObjectChanged"
S3_OBJECT_TOO_LARGE = "S3ObjectTooLarge"
S3_ERROR = "S3Error"


class S3Failure(TaskError):
    """A failed S3 call; `code` is S3's error code (`NoSuchKey`, `NoSuchBucket`, `SlowDown`...) or empty."""

    def __init__(self, code: str, message: str, *, reason: str, hint: str = "", retryable: bool = False):
        super().__init__(message, reason=reason, hint=hint, retryable=retryable)
        self.code = code

    @property
    def missing_bucket(self) -> bool:
        return self.code == "NoSuchBucket"


def s3_url(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


_NOT_FOUND_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "404", "NotFound"}
_DENIED_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
    "AccountProblem",
}
_UNAVAILABLE_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "500",
    "502",
    "503",
    "504",
}


@functools.cache
def connection_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the connection (not S3) failed: worth resuming a stream after."""
    import botocore.exceptions
    import urllib3.exceptions

    return (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.ConnectionClosedError,
        botocore.exceptions.ConnectTimeoutError,
        botocore.exceptions.ReadTimeoutError,
        botocore.exceptions.ResponseStreamingError,
        botocore.exceptions.IncompleteReadError,
        botocore.exceptions.HTTPClientError,
        urllib3.exceptions.HTTPError,
        ConnectionError,
        TimeoutError,
    )


def error_code(error: BaseException) -> str:
    """S3's error code of a botocore `ClientError` (or its HTTP status), else empty."""
    response: Any = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    details = response.get("Error", {})
    return str(details.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def s3_error(error: BaseException, bucket: str, key: str, action: str, endpoint: str = "") -> TaskError:
    """Translate a boto3/botocore exception into a `TaskError` naming `s3://bucket/key`, the action and the cause."""
    import botocore.exceptions

    where = s3_url(bucket, key)
    if isinstance(error, TaskError):
        return error
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        code = error_code(error)
        text = str(details.get("Message") or code)
        cause = f"{code}: {text}" if text != code else code
        if code == "NoSuchBucket":
            return S3Failure(
                code,
                f"{action} {where}: bucket {bucket!r} does not exist ({cause})",
                reason=S3_NOT_FOUND,
                hint="check the bucket name, and the region and endpoint it lives in",
            )
        if code in _NOT_FOUND_CODES:
            return S3Failure(
                code,
                f"{action} {where}: object not found ({cause})",
                reason=S3_NOT_FOUND,
                hint="check the key and prefix (a prefix is used verbatim, so it usually ends with '/')",
            )
        if code in _DENIED_CODES:
            return S3Failure(
                code,
                f"{action} {where}: access denied ({cause})",
                reason=S3_ACCESS_DENIED,
                hint="check the pod's AWS credentials (IRSA / Pod Identity role) and the bucket policy",
            )
        if code in ("PreconditionFailed", "412"):
            return S3Failure(
                code,
                f"{action} {where}: the object was replaced while it was being read ({cause})",
                reason=S3_OBJECT_CHANGED,
                hint="run the task again to read the new object",
                retryable=True,
            )
        if code in _UNAVAILABLE_CODES:
            return S3Failure(
                code,
                f"{action} {where}: S3 is throttling or failing ({cause}) and retries did not help",
                reason=S3_UNAVAILABLE,
                hint="S3 or the endpoint is overloaded or down; retry later (spec.retry) or lower the request rate",
                retryable=True,
            )
        return S3Failure(code, f"{action} {where}: {cause}", reason=S3_ERROR)
    if isinstance(error, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return S3Failure(
            "",
            f"{action} {where}: no usable AWS credentials ({error})",
            reason=S3_ACCESS_DENIED,
            hint="give the pod credentials: IRSA / Pod Identity, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(error, botocore.exceptions.ParamValidationError):
        return S3Failure("", f"{action} {where}: invalid request ({error})", reason=S3_ERROR)
    if isinstance(error, botocore.exceptions.FlexibleChecksumError):
        return S3Failure(
            "",
            f"{action} {where}: the data received does not match the object's checksum ({error})",
            reason=S3_UNAVAILABLE,
            hint="the transfer was corrupted on the way; the task can be retried",
            retryable=True,
        )
    if isinstance(error, connection_errors()):
        target = f" at {endpoint}" if endpoint else ""
        return S3Failure(
            "",
            f"{action} {where}: connection to S3{target} failed ({type(error).__name__}: {error})",
            reason=S3_UNAVAILABLE,
            hint="check the endpoint URL, network policy and DNS; the task can be retried",
            retryable=True,
        )
    if isinstance(error, botocore.exceptions.BotoCoreError):
        return S3Failure("", f"{action} {where}: {type(error).__name__}: {error}", reason=S3_ERROR)
    raise error
