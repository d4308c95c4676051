"""The `monge` command.

    monge serve [--host 127.0.0.1] [--port 50051]      run the server (embedded default)
        [--tls-cert C --tls-key K] [--token-file F]     TLS and bearer tokens (or MONGE_TOKENS)
    monge info [--target HOST:PORT]                     what a server runs on
    monge health [--target HOST:PORT]                   exit 0 when SERVING
    monge solve sinkhorn|exact|sparsity --x X.npy ...   one solve through a server (cli_solve.py)
    monge batch FILES... [--solver S] [--out DIR]       many problems as one job (cli_batch.py)
    monge sample SOURCE [--nfe N] [--out F]             probability-flow samples (cli_pfode.py)
    monge loglik SOURCE --points P.npy [--out F]        probability-flow log-likelihoods (cli_pfode.py)
    monge jobs list|get|watch|cancel ...                the server's jobs (cli_jobs.py)
    monge ruot fit|query|export|plot ...                Var-RUOT dynamics from snapshots (cli_ruot.py)
    monge fedwad create|party|status|cancel ...         federated Wasserstein (fedwad_cli.py)

Commands that reach a server take --tls-ca FILE (trust these CAs; turns on TLS) and
--token-file FILE (or the MONGE_TOKEN variable) for the bearer token.

A call the server refuses prints one line, `monge: CODE: field: message`, and exits 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from monge.client.errors import MongeError

from monge.client.cli_common import DEFAULT_TARGET, connection, remote


def server_config(args):
    """The ServerConfig that `monge serve` flags ask for (ValueError for bad settings)."""
    from monge.server.auth import split_token_variable
    from monge.server.config import ServerConfig

    return ServerConfig.from_flags(args, tokens=tuple(split_token_variable(os.environ.get("MONGE_TOKENS", ""))))


def _serve(args) -> int:
    import asyncio

    from monge.server.app import serve
    from monge.server.data_dir import DataDirInUse

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(server_config(args)))
    except (ValueError, OSError, DataDirInUse) as error:  # bad settings, unreadable files, a held data dir
        raise SystemExit(f"monge: {error}") from None
    return 0


def _info(args) -> int:
    from monge.client import Client

    with Client(args.target, **connection(args)) as client:
        info = client.info(timeout=args.timeout)
    if args.json:
        print(json.dumps(_as_dict(info), indent=2))
        return 0
    print(f"monge {info.version} at {args.target}")
    print(f"jax {info.jax_version}, backend: {info.backend}")
    for device in info.devices:
        print(f"  device {device.id}: {device.platform} ({device.kind})")
    print(f"workers: {len(info.workers)}")
    print(f"solvers: {', '.join(info.solvers)}")
    for worker in info.workers:
        where = f"pid {worker.pid}" if worker.address == "local" else worker.address
        devices = ", ".join(f"{d.platform}:{d.id}" for d in worker.devices)
        print(f"  worker {worker.index} ({where}) on {devices}, {'busy' if worker.busy else 'idle'}")
    if info.cluster:
        print(f"cluster: {info.cluster}")
    print(f"max message: {info.max_message_bytes / (1 << 20):.0f} MiB")
    return 0


def _health(args) -> int:
    """Exit 0 when the server's health service answers SERVING (for container checks)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from monge.client.channel import open_channel

    with open_channel(args.target, root_certificates=args.tls_ca) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as error:
            print(f"monge: health check failed: {error.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def _as_dict(obj):
    import dataclasses

    return dataclasses.asdict(obj)




def build_parser() -> argparse.ArgumentParser:
    from monge.server.config import ServerConfig

    parser = argparse.ArgumentParser(prog="monge", description="Optimal-transport solver service.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC server")
    ServerConfig.add_flags(serve)  # one flag per setting, its default stated once, in ServerConfig
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)

    info = commands.add_parser("info", help="show the server's version, backend and devices")
    remote(info)
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=_info)

    health = commands.add_parser("health", help="exit 0 if the server reports SERVING")
    remote(health)
    health.add_argument("--service", default="", help="service name (default: the whole server)")
    health.set_defaults(run=_health)

    from monge.client import cli_batch, cli_jobs, cli_pfode, cli_ruot, cli_solve
    from monge.client.fedwad_cli import register as register_fedwad

    cli_solve.register(commands, remote)
    cli_jobs.register(commands, remote)
    cli_batch.register(commands, remote)
    cli_pfode.register(commands, remote)
    cli_ruot.register(commands, remote)
    register_fedwad(commands, DEFAULT_TARGET)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except MongeError as error:
        from monge.client.cli_common import error_line

        print(f"monge: {error_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("monge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
