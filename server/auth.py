"""Bearer tokens, who a caller is, and the rule for where the server may listen.

Tokens come from a file (one a line, `token` or `name:token`; blank lines and `#`
comments skipped) or the `MONGE_TOKENS` variable (the same entries, separated by commas
or whitespace). A named token's identity is its name; an unnamed one's is a hash of the
token, so the raw token is never stored. `TokenInterceptor` answers UNAUTHENTICATED to
any call without `authorization: Bearer <token>` for a known token, except the health
and reflection services, which stay open. Handlers learn the caller with
`Authenticator.owner(context)`; with no tokens configured everyone is `ANONYMOUS`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import pathlib
import re

import grpc

ANONYMOUS = ""
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_TOKEN = re.compile(r"[\x21-\x7e]{8,4096}")  # printable ASCII, no spaces: a valid header value
_OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                  "/grpc.reflection.v1.ServerReflection/")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(entries, source: str) -> dict[bytes, str]:
    """{sha256(token): identity} from entries `token` or `name:token`; ValueError names
    the source and entry number of a malformed, short or repeated one."""
    table: dict[bytes, str] = {}
    for number, entry in enumerate(entries, 1):
        name, sep, token = entry.partition(":")
        if not sep or not _NAME.fullmatch(name):
            name, token = None, entry
        if not _TOKEN.fullmatch(token):
            raise ValueError(f"{source}: entry {number} is not a token (at least 8 printable "
                             "ASCII characters, no spaces)")
        digest = _digest(token)
        identity = name or "sha256:" + digest.hex()[:24]
        if digest in table:
            raise ValueError(f"{source}: entry {number} repeats a token")
        if name and name in table.values():
            raise ValueError(f"{source}: entry {number} repeats the name {name!r}")
        table[digest] = identity
    return table


def read_token_file(path: str | pathlib.Path) -> list[str]:
    lines = pathlib.Path(path).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def split_token_variable(value: str) -> list[str]:
    """Entries of MONGE_TOKENS: separated by commas or whitespace."""
    return [entry for entry in re.split(r"[\s,]+", value) if entry]


class Authenticator:
    """Knows the tokens; `enabled` is False when there are none (everyone is ANONYMOUS)."""

    def __init__(self, table: dict[bytes, str]):
        self._table = list(table.items())

    @classmethod
    def from_config(cls, config) -> "Authenticator":
        entries, sources = list(config.tokens), []
        if config.tokens:
            sources.append("tokens")
        if config.token_file:
            entries_from_file = read_token_file(config.token_file)
            if not entries_from_file:
                raise ValueError(f"{config.token_file}: no tokens in the token file")
            entries += entries_from_file
            sources.append(config.token_file)
        return cls(parse_tokens(entries, " and ".join(sources) or "tokens"))

    @property
    def enabled(self) -> bool:
        return bool(self._table)

    @property
    def identities(self) -> list[str]:
        return [identity for _, identity in self._table]

    def identify(self, metadata) -> str | None:
        """The caller's identity, ANONYMOUS when auth is off, None for a missing or
        unknown token. Every known token is compared, in constant time each."""
        if not self._table:
            return ANONYMOUS
        presented = bearer_token(metadata)
        if presented is None:
            return None
        digest, found = _digest(presented), None
        for known, identity in self._table:
            if hmac.compare_digest(digest, known):
                found = identity
        return found

    def owner(self, context: grpc.aio.ServicerContext) -> str:
        """The identity of a call that the interceptor let through."""
        identity = self.identify(context.invocation_metadata() or ())
        if identity is None:  # unreachable behind TokenInterceptor; never fall back to anonymous
            raise PermissionError("call reached a handler without a valid token")
        return identity


def bearer_token(metadata) -> str | None:
    for key, value in metadata:
        if key.lower() == "authorization":
            scheme, _, token = (value.decode() if isinstance(value, bytes) else value).partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""

    async def refuse(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through only with a known bearer token (health and reflection: always)."""

    def __init__(self, authenticator: Authenticator):
        self._auth = authenticator

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or details.method.startswith(_OPEN_SERVICES):
            return handler
        metadata = details.invocation_metadata or ()
        if self._auth.identify(metadata) is not None:
            return handler
        if bearer_token(metadata) is None:
            return _refusal(handler, "missing credentials: send metadata 'authorization: Bearer <token>'")
        return _refusal(handler, "invalid token")


# -- where the server may listen ---------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1; False for wildcards, other addresses
    and other names (a name could resolve anywhere)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class BindPolicy:
    """Why a server may not listen where it was asked to, or None."""

    host: str
    tls: bool
    tokens: bool
    insecure: bool

    def refusal(self) -> str | None:
        if self.insecure or is_loopback(self.host) or (self.tls and self.tokens):
            return None
        missing = " and no ".join(what for what, present in
                               (("TLS (--tls-cert, --tls-key)", self.tls),
                                ("tokens (--token-file or MONGE_TOKENS)", self.tokens)) if not present)
        return (f"refusing to listen on {self.host}: it is not a loopback address and the server has "
                f"no {missing}, so anyone who can reach it could run solvers and read every job. "
                "Give both TLS and tokens, bind 127.0.0.1, or pass --insecure to accept the risk.")


def metrics_bind_refusal(host: str, insecure: bool) -> str | None:
    """The same rule for the Prometheus endpoint, which is plain HTTP with no tokens
    whatever the gRPC port has: anywhere but loopback needs `insecure`."""
    if insecure or is_loopback(host):
        return None
    return (f"refusing to serve metrics on {host} (--metrics-host): it is not a loopback address and the "
            "metrics endpoint has no TLS and no tokens, so anyone who can reach it could read the server's "
            "request counts, queue and job figures. Bind 127.0.0.1 and scrape through a tunnel or a local "
            "agent, or pass --insecure to accept the risk.")
