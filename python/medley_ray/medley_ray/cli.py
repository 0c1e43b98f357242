"""`medley-ray index PATHS --db URI`: the command line."""

import argparse
import json
import os
import sys

import ray

from .driver import EXIT_REFUSED, EXIT_RETRYABLE, Refused, find_medley, index

EPILOG = """\
The cluster: `ray.init()` connects to RAY_ADDRESS or --address when set (a `ray start`
cluster, or a KubeRay cluster through `ray job submit`), else starts Ray on this machine.
Every node needs `medley` on its PATH (or --medley) and its model cache (MEDLEY_HOME, which is
forwarded with the other MEDLEY_* and AWS_* variables).

Re-running the same command resumes: tasks already committed are skipped, and items already in
the tables are not indexed again.

Exit status: 0 done, 1 done but some files failed (see the failures table), 2 refused
(configuration or database), 75 some tasks could not be done (re-run to resume)."""


def parser():
    p = argparse.ArgumentParser(prog="medley-ray", description="Index media with medley on a Ray cluster.")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser(
        "index",
        help="index media files and folders into a medley database",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    i.add_argument("paths", nargs="+", help="files or folders (walked as `medley index` walks them)")
    i.add_argument("--db", required=True, help="database: a directory every node sees, or s3://bucket/path")
    i.add_argument("--files-per-task", type=int, default=8, help="files per task (default 8)")
    i.add_argument("--gpus-per-task", type=float, default=0.0, help="GPUs per worker (default 0: CPU workers)")
    i.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs per worker (default 1)")
    i.add_argument("--workers", type=int, help="workers (default: the cluster's GPUs or CPUs over the above)")
    i.add_argument("--pipeline", help="pipeline file (default: medley's built-in video-default)")
    i.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where the models run (default: the pipeline's)")
    i.add_argument("--medley", default="medley", help="the medley binary (default: `medley` on PATH)")
    i.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    i.add_argument(
        "--node-ip-address",
        help="this machine's address in the cluster, when Ray would guess another (default: Ray's guess)",
    )
    i.add_argument("--json", action="store_true", help="print the run's report as JSON on stdout")
    i.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        find_medley(args.medley)  # before Ray starts, which takes seconds
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    # Ray's own messages (a worker died, ...) may be written to file descriptor 1 by its C++
    # core: stdout is kept for the report alone, everything else goes to stderr.
    report_out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    if args.files_per_task < 1:
        print("error: --files-per-task must be at least 1", file=sys.stderr)
        return EXIT_REFUSED
    ray.init(
        address=args.address,
        _node_ip_address=args.node_ip_address,
        logging_level="warning",
        log_to_driver=False,
    )
    try:
        status, report = index(
            args.paths,
            args.db,
            files_per_task=args.files_per_task,
            gpus_per_task=args.gpus_per_task,
            cpus_per_task=args.cpus_per_task,
            workers=args.workers,
            pipeline=args.pipeline,
            device=args.device,
            medley=args.medley,
            quiet=args.quiet,
        )
    except Refused as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RETRYABLE
    if args.json:
        print(json.dumps(report, indent=2), file=report_out)
    else:
        print(
            f"indexed {report['indexed']} items, {report['already_indexed']} already indexed, "
            f"{report['failed']} failed, in {report['tasks'] - report['tasks_skipped']} tasks on "
            f"{report['workers']} workers, {len(report['commits'])} commits, {report['retries']} retries; "
            f"{report['wall_seconds']:.1f} s",
            file=report_out,
        )
    report_out.flush()
    return status
