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
    from monge.server.config import MIB, ServerConfig

    return ServerConfig(
        host=args.host,
        port=args.port,
        max_message_bytes=args.max_message_mb * MIB,
        grace_seconds=args.grace,
        workers=args.workers,
        queue_limit=args.queue_limit,
        **({"data_dir": args.data_dir} if args.data_dir else {}),
        cluster=args.cluster,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        token_file=args.token_file,
        tokens=tuple(split_token_variable(os.environ.get("MONGE_TOKENS", ""))),
        insecure=args.insecure,
        max_jobs_per_owner=args.max_jobs_per_owner,
        max_batch_size=args.max_batch,
        max_batch_delay_seconds=args.batch_delay_ms / 1000.0,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        max_points=args.max_points,
        max_dense_elements=args.max_dense_elements,
        max_request_memory_bytes=args.max_request_memory_mb * MIB,
        max_iterations=args.max_iterations,
        max_samples=args.max_samples,
        max_training_steps=args.max_training_steps,
        max_training_seconds=args.max_training_seconds,
        max_trajectory_steps=args.max_trajectory_steps,
        max_trajectory_elements=args.max_trajectory_elements,
        max_job_items=args.max_job_items,
    )


def _serve(args) -> int:
    import asyncio

    from monge.server.app import serve

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(server_config(args)))
    except (ValueError, OSError) as error:  # bad settings, unreadable TLS or token files
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
    parser = argparse.ArgumentParser(prog="monge", description="Optimal-transport solver service.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC server")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=50051)
    serve.add_argument("--max-message-mb", type=int, default=512, help="largest request/response")
    serve.add_argument("--workers", type=int, default=None,
                       help="worker processes (default: one per GPU, or one CPU worker)")
    serve.add_argument("--queue-limit", type=int, default=64, help="calls waiting before RESOURCE_EXHAUSTED")
    serve.add_argument("--data-dir", help="job database, results, compile cache (default ~/.local/share/monge)")
    serve.add_argument("--cluster", help="Dask scheduler address (tcp://HOST:8786) to scale out")
    serve.add_argument("--max-batch", type=int, default=None,
                       help="concurrent small Sinkhorn calls merged into one vmapped call "
                            "(1: off; default 32 on GPU workers, off on CPU)")
    serve.add_argument("--batch-delay-ms", type=float, default=2.0,
                       help="longest an idle server holds a call to batch it")
    serve.add_argument("--metrics-port", type=int, default=None,
                       help="serve Prometheus metrics on this port (default: off)")
    serve.add_argument("--metrics-host", default="127.0.0.1",
                       help="address of the metrics endpoint (default loopback; it has no TLS or tokens, "
                            "so any other address needs --insecure)")
    serve.add_argument("--grace", type=float, default=10.0, help="seconds for in-flight calls on shutdown")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--tls-cert", help="PEM certificate (chain); with --tls-key, serve only TLS")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument("--token-file", help="bearer tokens, one a line: TOKEN or NAME:TOKEN "
                                            "(also: $MONGE_TOKENS, comma-separated)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback --host without TLS and tokens")
    serve.add_argument("--max-jobs-per-owner", type=int, default=1000,
                       help="unfinished jobs one token may have before RESOURCE_EXHAUSTED")
    serve.add_argument("--max-points", type=int, default=10_000_000,
                       help="most points per measure in one request")
    serve.add_argument("--max-dense-elements", type=int, default=100_000_000,
                       help="largest n * m for which a dense cost matrix or plan is built")
    serve.add_argument("--max-request-memory-mb", type=int, default=4096,
                       help="most memory one solver call may need, estimated before it runs; larger "
                            "Sinkhorn calls on points compute their cost in blocks, others are refused")
    serve.add_argument("--max-iterations", type=int, default=1_000_000,
                       help="largest iteration cap, step count or number of rounds a request may ask for")
    serve.add_argument("--max-samples", type=int, default=10_000_000,
                       help="most samples or points in one probability-flow request")
    serve.add_argument("--max-training-steps", type=int, default=1_000_000,
                       help="most optimiser steps of a training job item (score models, Var-RUOT fits)")
    serve.add_argument("--max-training-seconds", type=float, default=24 * 3600.0,
                       help="longest a training item may run, checked at each of its reports")
    serve.add_argument("--max-trajectory-steps", type=int, default=100_000,
                       help="most time steps of one simulated Var-RUOT trajectory")
    serve.add_argument("--max-trajectory-elements", type=int, default=100_000_000,
                       help="most values (steps x particles x dimension) of one trajectory")
    serve.add_argument("--max-job-items", type=int, default=10_000, help="most items in one job (and problems in one SinkhornBatch call)")
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
