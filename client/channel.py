"""Opening a channel to a Monge server: plaintext or TLS, with or without a bearer token.

With TLS the token travels as gRPC call credentials (`authorization: Bearer <token>`),
which gRPC sends only over a secure channel. Without TLS (a server on loopback) an
interceptor adds the same metadata to every call, streams included; do not send a token
in plaintext across a network.
"""

from __future__ import annotations

import collections
import os
import pathlib
from typing import Sequence

import grpc


def read_pem(source: bytes | str | os.PathLike) -> bytes:
    """PEM bytes as given, or read from a path."""
    if isinstance(source, bytes):
        return source
    return pathlib.Path(source).read_bytes()


def read_token_file(path: str | os.PathLike) -> str:
    """The token in a file: its first line that is neither blank nor a `#` comment."""
    for line in pathlib.Path(path).read_text().splitlines():
        if line.strip() and not line.strip().startswith("#"):
            return line.strip()
    raise ValueError(f"{path}: no token in the file")


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                            "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class BearerTokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call on a plaintext channel."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(details.method, details.timeout, (*(details.metadata or ()), self._header),
                            details.credentials, details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def open_channel(
    target: str,
    *,
    options: Sequence[tuple[str, object]] = (),
    credentials: grpc.ChannelCredentials | None = None,
    root_certificates: bytes | str | os.PathLike | None = None,
    token: str | None = None,
) -> grpc.Channel:
    """A channel to `target`. `root_certificates` (PEM bytes or a path) turns on TLS
    verified against them; `credentials` is an alternative for any other channel
    credentials. `token` is sent on every call."""
    if root_certificates is not None:
        if credentials is not None:
            raise ValueError("give credentials or root_certificates, not both")
        credentials = grpc.ssl_channel_credentials(read_pem(root_certificates))
    if token is not None and (not token or any(c.isspace() or not c.isprintable() for c in token)):
        raise ValueError("a token is printable ASCII without spaces")
    if credentials is not None:
        if token is not None:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(token))
        return grpc.secure_channel(target, credentials, options=list(options))
    channel = grpc.insecure_channel(target, options=list(options))
    if token is not None:
        channel = grpc.intercept_channel(channel, BearerTokenInterceptor(token))
    return channel
