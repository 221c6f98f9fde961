"""``python -m bench <sub> [--quick] [--json]`` (and ``roster bench``, which delegates here).

Sub-commands (each prints a table; ``--json`` prints a machine-readable record on stdout and the
table on stderr; ``--out FILE`` also writes the JSON to FILE)::

    decide   in-process permission decision: median/p99 ns per check, hot and random access
    http     load against a real `roster serve` subprocess and the bare-ASGI floor (wrk or the
             in-repo raw trio client): check req/s, check_batch checks/s, whitelist_set at 1 and
             64 clients under --fsync always and none
    wal      WriteAheadLog appends per fsync policy and writer count, group-commit batch sizes,
             replay records/s, snapshot time and event-loop lag, restart (recover) time
    memory   RSS per membership of the generated state, in a fresh subprocess
    peer     the same workloads against a private redis-server (when installed), as Roster/Redis
    resp     redis-benchmark against Roster's RESP port (CHECK, CHECKM, WL.SET) beside HTTP on
             the same roster serve processes and a private redis-server, one run, as ratios
    restart  `roster serve` start to the first /health 200 from a snapshot (1M channels x 10)
             against a fresh redis-server loading the same sets from its RDB, best of rounds;
             goals <= 10 s and <= 4x Redis (building the Redis side with redis-cli --pipe takes
             a minute or two at full size)
    edge     the HTTP edge: slowloris (latency of a normal client, time to reap) and a
             descriptor flood under a low RLIMIT_NOFILE (held, time to recover); not in "all"
    cluster  cluster mode on three nats-server + three roster nodes: WL.SET on the leader vs one
             node (fsync always), CHECK on two followers vs one, kill -9 failover time (median of
             10), the trio-asyncio bridge's cost per call; needs nats-server; not in "all"
    all      everything above but edge and cluster, in one run (peer reuses the http figures of
             that run)

``--quick`` shrinks every size so that each sub-command finishes in well under a minute.
Benchmarks never gate CI: they print figures; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import Record


def _positive(text: str) -> int:
    value = int(text.replace("_", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def build_parser(prog: str = "python -m bench") -> argparse.ArgumentParser:
    """``prog`` is how the user ran it: ``roster bench`` passes its own name for --help."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quick", action="store_true",
                        help="small sizes and short runs (each sub-command < 1 min)")
    common.add_argument("--json", action="store_true",
                        help="print the JSON record on stdout (the table goes to stderr)")
    common.add_argument("--out", help="also write the JSON record(s) to this file")
    common.add_argument("--channels", type=_positive, default=0,
                        help="group channels in the generated state (default 1M; quick: less)")
    common.add_argument("--members", type=_positive, default=10,
                        help="subscribers per channel (default 10)")

    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="sub", required=True)

    d = sub.add_parser("decide", parents=[common], help="in-process permission decision")
    d.add_argument("--checks", type=_positive, default=0,
                   help="checks per access pattern (default 1M; quick 200k)")

    h = sub.add_parser("http", parents=[common], help="HTTP load against roster serve")
    _http_options(h)

    w = sub.add_parser("wal", parents=[common], help="write-ahead log figures")
    w.add_argument("--records", type=_positive, default=0,
                   help="records written then replayed (default 1M; quick 100k)")
    w.add_argument("--seconds", type=float, default=0.0,
                   help="seconds per append run (default 3; quick 0.5)")
    w.add_argument("--writers", default="1,8,64,256", help="writer counts, comma separated")
    w.add_argument("--policies", default="always,interval,none",
                   help="fsync policies, comma separated")

    sub.add_parser("memory", parents=[common], help="RSS per membership")

    p = sub.add_parser("peer", parents=[common], help="the same workloads against Redis")
    _http_options(p)

    r = sub.add_parser("resp", parents=[common],
                       help="RESP lane vs HTTP (same server) vs Redis, redis-benchmark")
    _http_options(r)

    s = sub.add_parser("restart", parents=[common],
                       help="roster serve start -> /health vs redis-server RDB load",
                       description="Time `roster serve` from process start to the first "
                       "/health 200 on a snapshot of the generated state (plus --tail-records "
                       "log records), and a fresh redis-server loading the same sets from an RDB "
                       "until PING answers and loading:0, alternating, best of --rounds. Full "
                       "size: 1M channels x 10; building the Redis side (redis-cli --pipe, then "
                       "SAVE) takes a minute or two, each Roster start as long as its recovery.")
    _restart_options(s)

    e = sub.add_parser("edge", parents=[common], help="slowloris and descriptor flood")
    e.add_argument("--slow", type=_positive, default=0,
                   help="slowloris connections (default 500; quick 100)")
    e.add_argument("--trickle", type=float, default=0.5,
                   help="seconds between the header bytes of a slow connection")
    e.add_argument("--header-timeout", type=float, default=10.0, dest="header_timeout",
                   help="the server's --http-header-timeout (default 10)")
    e.add_argument("--seconds", type=float, default=0.0,
                   help="seconds of normal-client requests per measurement (default 5)")
    e.add_argument("--nofile", type=_positive, default=256,
                   help="RLIMIT_NOFILE of the flooded server")
    e.add_argument("--flood", type=_positive, default=0,
                   help="connections opened and held in the flood (default 1000; quick 300)")

    c = sub.add_parser("cluster", parents=[common],
                       help="cluster mode vs one node: writes, reads, failover, bridge cost")
    c.add_argument("--duration", type=float, default=0.0,
                   help="seconds per redis-benchmark row (default 5; quick 1)")

    a = sub.add_parser("all", parents=[common], help="every sub-command, one run")
    _http_options(a)
    _restart_options(a)
    a.add_argument("--checks", type=_positive, default=0)
    a.add_argument("--records", type=_positive, default=0)
    a.add_argument("--writers", default="1,8,64,256")
    a.add_argument("--policies", default="always,interval,none")
    a.add_argument("--wal-seconds", type=float, default=0.0, dest="wal_seconds")
    a.add_argument("--skip", default="", help="sub-commands to leave out, comma separated")
    return parser


def _http_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--client", choices=("auto", "wrk", "trio"), default="auto",
                   help="load generator: wrk when installed (auto), or the in-repo trio client")
    p.add_argument("--duration", type=float, default=0.0,
                   help="seconds per HTTP measurement (default 5; quick 2)")
    p.add_argument("--http-channels", type=_positive, default=0, dest="http_channels",
                   help="channels preloaded into the servers (default: --channels)")


def _restart_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=_positive, default=0,
                   help="restart: rounds of Roster and Redis starts, best counts "
                   "(default 3; quick 1)")
    p.add_argument("--tail-records", type=int, default=0, dest="tail_records",
                   help="restart: log records after the snapshot, replayed at start (default 0)")


Printer = Callable[[Record, Any], None]


_MODULES = {"decide": "bench.decide", "memory": "bench.memory", "wal": "bench.walbench",
            "http": "bench.httpbench", "peer": "bench.peer", "resp": "bench.respbench",
            "restart": "bench.restartbench", "edge": "bench.edgebench",
            "cluster": "bench.clusterbench"}


def _runner(name: str) -> tuple[Callable[[argparse.Namespace], Record], Printer]:
    """Import a sub-command's module only when it runs (http pulls in more than decide)."""
    module = importlib.import_module(_MODULES[name])
    return module.main, module.print_table


def main(argv: Sequence[str] | None = None, prog: str = "python -m bench") -> int:
    args = build_parser(prog).parse_args(list(argv) if argv is not None else None)
    table_out = sys.stderr if args.json else sys.stdout
    records: list[Record] = []
    if args.sub == "all":
        skip = {s.strip() for s in args.skip.split(",") if s.strip()}
        for name in ("decide", "memory", "wal", "http", "peer", "resp", "restart"):
            if name in skip:
                continue
            if name == "wal" and args.wal_seconds:
                args.seconds = args.wal_seconds
            elif name == "wal":
                args.seconds = 0.0
            if name == "peer":
                args.roster_http = next((r for r in records if r["bench"] == "http"), None)
            run, show = _runner(name)
            rec = run(args)
            show(rec, table_out)
            records.append(rec)
    else:
        run, show = _runner(args.sub)
        rec = run(args)
        show(rec, table_out)
        records.append(rec)
    document: Any = records[0] if len(records) == 1 and args.sub != "all" else records
    text = json.dumps(document, indent=2, sort_keys=False)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if args.json:
        print(text, flush=True)
    failed = [r["bench"] for r in records if r.get("error")]
    return 1 if failed else 0
