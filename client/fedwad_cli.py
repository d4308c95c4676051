"""`monge fedwad ...`: federated Wasserstein sessions from the shell.

    monge fedwad create --parties alice bob [--rounds 100] [--seed 0] ...   prints the id
    monge fedwad party --data A.npy --session ID [--name alice] [--target HOST:PORT]
    monge fedwad status --session ID [--wait] [--json]
    monge fedwad cancel --session ID

A party's data stays in its process; only interpolating measures travel. FedWaD is not
differentially private: see README.md, "Federated Wasserstein".
"""

from __future__ import annotations

import json

import numpy as np

from monge.client.cli_common import add_connection_arguments, connection, load_array


def _print(session, as_json: bool):
    if as_json:
        print(json.dumps({
            "session_id": session.session_id, "state": session.state, "message": session.message,
            "parties": list(session.parties), "joined": list(session.joined),
            "distances": [[None if np.isnan(v) else float(v) for v in row] for row in session.distances],
            "pairs": [{"first": p.first, "second": p.second, "estimate": p.estimate,
                       "rounds_done": p.rounds_done, "rounds": p.rounds, "best_round": p.best_round,
                       "bound_history": p.bound_history.tolist()} for p in session.pairs],
        }, indent=2))
        return
    print(f"session   {session.session_id}")
    print(f"state     {session.state}: {session.message}")
    print(f"parties   {', '.join(session.parties)} (joined: {', '.join(session.joined) or 'none'})")
    for p in session.pairs:
        estimate = "-" if p.estimate is None else f"{p.estimate:.10g}"
        print(f"  ({p.first}, {p.second})  estimate {estimate}  rounds {p.rounds_done}/{p.rounds}"
              f"  best round {p.best_round}")
    if len(session.parties) > 2 and session.ended:
        print("distances")
        print(np.array2string(session.distances, precision=6))


def _create(args) -> int:
    from monge.client.fedwad import FedWadSessions

    with FedWadSessions(args.target, timeout=args.timeout, **connection(args)) as sessions:
        session = sessions.create(
            args.parties, rounds=args.rounds, support_size=args.support_size, t=args.t,
            seed=args.seed, p=args.p, dimension=args.dimension,
            inactivity_timeout=args.inactivity_timeout,
        )
    print(session.session_id)
    return 0


def _party(args) -> int:
    from monge.client.fedwad import FedWadParty

    party = FedWadParty(load_array(args.data, "--data"), load_array(args.weights, "--weights"), name=args.name or "")
    session = party.join(args.target, args.session, timeout=args.timeout, **connection(args))
    _print(session, args.json)
    return 0


def _status(args) -> int:
    from monge.client.fedwad import FedWadSessions

    with FedWadSessions(args.target, timeout=args.timeout, **connection(args)) as sessions:
        session = sessions.wait(args.session) if args.wait else sessions.get(args.session)
    _print(session, args.json)
    return 0 if session.state in ("completed", "waiting", "running") else 3


def _cancel(args) -> int:
    from monge.client.fedwad import FedWadSessions

    with FedWadSessions(args.target, timeout=args.timeout, **connection(args)) as sessions:
        _print(sessions.cancel(args.session), False)
    return 0


def register(commands, default_target: str) -> None:
    """Add `fedwad` and its subcommands to the `monge` parser's subparsers."""
    fedwad = commands.add_parser("fedwad", help="federated Wasserstein sessions (data stays with each party)")
    actions = fedwad.add_subparsers(dest="fedwad_command", required=True)

    def remote(p, timeout):
        p.add_argument("--target", default=default_target, help=f"server address (default {default_target})")
        p.add_argument("--timeout", type=float, default=timeout, help="seconds")
        add_connection_arguments(p)

    create = actions.add_parser("create", help="open a session; prints its id")
    remote(create, 60.0)
    create.add_argument("--parties", nargs="+", required=True, help="party names, in order")
    create.add_argument("--rounds", type=int, default=100)
    create.add_argument("--support-size", type=int, help="atoms of xi (default: the larger sample size)")
    create.add_argument("--t", type=float, help="fixed fraction in (0, 1) (default: drawn each round)")
    create.add_argument("--seed", type=int, default=0)
    create.add_argument("--p", type=float, default=2.0, help="order of W_p")
    create.add_argument("--dimension", type=int, help="required dimension (default: the first join sets it)")
    create.add_argument("--inactivity-timeout", type=float, help="seconds idle before the session expires")
    create.set_defaults(run=_create)

    party = actions.add_parser("party", help="join a session as one party and answer its rounds")
    remote(party, None)
    party.add_argument("--data", required=True, help="this party's points, .npy (n, d); never sent")
    party.add_argument("--weights", help="this party's weights, .npy (n,)")
    party.add_argument("--session", required=True, help="session id from `monge fedwad create`")
    party.add_argument("--name", help="party slot to take (default: the first free one)")
    party.add_argument("--json", action="store_true", help="print the final session as JSON")
    party.set_defaults(run=_party)

    status = actions.add_parser("status", help="state, estimates and history of a session")
    remote(status, 60.0)
    status.add_argument("--session", required=True)
    status.add_argument("--wait", action="store_true", help="wait until the session has ended")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=_status)

    cancel = actions.add_parser("cancel", help="end a waiting or running session")
    remote(cancel, 60.0)
    cancel.add_argument("--session", required=True)
    cancel.set_defaults(run=_cancel)

