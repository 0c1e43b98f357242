"""The driver: cuts the files into tasks, runs them on long-lived workers (Ray actors, one per
GPU or per `cpus_per_task` CPUs), and commits what they staged in groups, each commit exactly
once. Re-running the same command resumes: tasks a commit of the run already holds are skipped,
and workers skip items already in the tables.

Retries: Ray restarts a dead worker (`max_restarts=-1`), and the driver, not Ray
(`max_task_retries=0`), sends the task it was running to the next free worker. Ray's own task
retry would wait for that same actor to come back, which never happens when its node is gone
and no other node has a free GPU for it."""

import collections
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import ray
import ray.cloudpickle

from . import worker as worker_module
from .worker import IndexWorker, TaskFailed

# The actor class travels by value: nodes need `medley` on their PATH, not this package.
ray.cloudpickle.register_pickle_by_value(worker_module)

# Exit statuses, as `medley` uses them.
EXIT_FILES_FAILED = 1
EXIT_REFUSED = 2
EXIT_RETRYABLE = 75

# Environment a worker needs from the driver's: medley's own settings and object-store access.
FORWARDED_ENV = ("MEDLEY_", "AWS_", "GOOGLE_", "AZURE_")
# Commit at least this often while tasks finish (seconds), so a killed driver loses little.
COMMIT_AFTER_S = 30.0
# Attempts per task before it is split into one-file tasks (a file that kills its worker
# then costs one file, not the task's others); attempts per one-file task before giving up.
SPLIT_AFTER = 2
MAX_ATTEMPTS = 3


class Refused(Exception):
    """medley refused the configuration or database (exit 2): retrying cannot help."""


def find_medley(binary):
    """The path of the `medley` binary named (on PATH or a path); Refused when there is none."""
    found = shutil.which(binary) or binary
    if not os.access(found, os.X_OK):
        raise Refused(f"{binary}: no such program; put medley on PATH or pass --medley PATH")
    return found


class Medley:
    """The `medley` binary, run on the driver's machine for planning and commits."""

    def __init__(self, binary, db, pipeline):
        self.binary = find_medley(binary)
        self.db = db
        self.pipeline = pipeline

    def json(self, args, stdin=None, attempts=1):
        """Run `medley ARGS` and parse its stdout; exit 75 is retried `attempts` times."""
        for attempt in range(1, attempts + 1):
            proc = subprocess.run([self.binary, *args], input=stdin, capture_output=True, text=True)
            if proc.returncode == 0:
                return json.loads(proc.stdout)
            message = f"medley {args[0]} exited with status {proc.returncode}: {proc.stderr.strip()}"
            if proc.returncode != EXIT_RETRYABLE:
                raise Refused(message)
            if attempt == attempts:
                raise RuntimeError(message)
            time.sleep(attempt)

    def pipeline_args(self):
        return ["--pipeline", self.pipeline] if self.pipeline else []


def plan(medley, paths, files_per_task):
    """The files `medley index PATHS` would take, absolute, cut into tasks in order."""
    found = medley.json(["discover", "--json", *[os.path.abspath(p) for p in paths]])
    files = sorted(os.path.abspath(f) for f in found["files"])
    tasks = [
        {"task": f"{i // files_per_task:05d}", "files": files[i : i + files_per_task]}
        for i in range(0, len(files), files_per_task)
    ]
    return files, tasks


def run_id(files, pipeline, db):
    """The same inputs (paths, sizes, modification times), pipeline and database: the same run."""
    digest = hashlib.sha256()
    for f in files:
        try:
            st = os.stat(f)
            digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{f}\0gone\n".encode())
    if pipeline:
        with open(pipeline, "rb") as p:
            digest.update(p.read())
    digest.update(db.encode())
    return digest.hexdigest()[:16]


class Progress:
    """A bar on a terminal, a line per event otherwise (logs of batch jobs)."""

    def __init__(self, files, tasks, quiet):
        self.files, self.tasks, self.quiet = files, tasks, quiet
        self.files_done = self.tasks_done = self.commits = self.retries = 0
        self.tty = sys.stderr.isatty()

    def event(self, message):
        if self.quiet:
            return
        if self.tty:
            sys.stderr.write("\r\033[K")
        print(f"medley-ray: {message}", file=sys.stderr, flush=True)
        self.draw()

    def task_done(self, files):
        self.files_done += files
        self.tasks_done += 1
        self.draw()

    def draw(self):
        if self.quiet or not self.tty:
            return
        width = 30
        filled = width * self.files_done // max(self.files, 1)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.files_done}/{self.files} files, "
            f"{self.tasks_done}/{self.tasks} tasks, {self.commits} commits, {self.retries} retried"
        )
        sys.stderr.flush()

    def close(self):
        if self.tty and not self.quiet:
            sys.stderr.write("\n")


def worker_count(gpus_per_task, cpus_per_task, tasks):
    resources = ray.cluster_resources()
    if gpus_per_task > 0:
        n = int(resources.get("GPU", 0) / gpus_per_task)
        if n == 0:
            raise Refused(f"--gpus-per-task {gpus_per_task}: the cluster has {resources.get('GPU', 0)} GPUs")
    else:
        n = int(resources.get("CPU", 0) / cpus_per_task)
    return max(1, min(n, tasks))


def index(
    paths,
    db,
    files_per_task=8,
    gpus_per_task=0.0,
    cpus_per_task=1.0,
    workers=None,
    pipeline=None,
    device=None,
    medley="medley",
    quiet=False,
):
    """Index PATHS into DB on the connected Ray cluster; returns (exit status, report)."""
    started = time.monotonic()
    # Workers run in other directories (other machines): local paths are made absolute.
    if "://" not in db:
        db = os.path.abspath(db)
    if pipeline:
        pipeline = os.path.abspath(pipeline)
    tool = Medley(medley, db, pipeline)
    files, tasks = plan(tool, paths, files_per_task)
    run = run_id(files, pipeline, db)
    # Creates the tables once, here, before any worker: two creations of one new database race.
    begun = tool.json(["commit", "--db", db, "--run", run, "--begin", *tool.pipeline_args()], attempts=3)
    done_before = set(begun["tasks"])
    todo = collections.deque(t for t in tasks if t["task"] not in done_before)
    seq = max(begun["seqs"], default=0)
    since = json.dumps(begun["versions"])
    report = {
        "run": run,
        "db": db,
        "files": len(files),
        "tasks": len(tasks),
        "tasks_skipped": len(tasks) - len(todo),
        "indexed": 0,
        "already_indexed": 0,
        "failed": 0,
        "failures": [],
        "retries": 0,
        "failed_tasks": [],
        "commits": [],
        "placements": [],
        "workers": 0,
    }
    progress = Progress(sum(len(t["files"]) for t in todo), len(todo), quiet)
    progress.event(f"run {run}: {len(files)} files in {len(tasks)} tasks, {report['tasks_skipped']} committed before")
    if not todo:
        progress.close()
        report["wall_seconds"] = time.monotonic() - started
        return 0, report

    command = [tool.binary, "index-worker", "--db", db, *tool.pipeline_args()]
    if device:
        command += ["--device", device]
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    n = workers or worker_count(gpus_per_task, cpus_per_task, len(todo))
    report["workers"] = n
    actor_class = ray.remote(IndexWorker).options(
        num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_restarts=-1, max_task_retries=0
    )
    actors = [actor_class.remote(command, env) for _ in range(n)]
    # An actor takes tasks once it answers `where` (placed, and restarted after a death).
    pings = {a.where.remote(): a for a in actors}
    where = {}
    idle, inflight = [], {}
    attempts = collections.Counter()
    finished, last_commit = [], time.monotonic()
    status = 0

    def commit(final):
        nonlocal seq, finished, last_commit, since
        last_commit = time.monotonic()
        batch = [r for r in finished if not staged_empty(r["staged"])]
        finished = []
        if not batch:
            if final and report["commits"]:
                # The indexes still need the rows of the run's earlier commits.
                tool.json(["commit", "--db", db, "--run", run, "--seq", str(seq), "--index"], stdin="", attempts=3)
            return
        seq += 1
        lines = "".join(json.dumps({"task": r["task"], "staged": r["staged"]}) + "\n" for r in batch)
        args = ["commit", "--db", db, "--run", run, "--seq", str(seq), "--since", since]
        outcome = tool.json(args + (["--index"] if final else []), stdin=lines, attempts=3)
        # The next commit looks for itself only after this one: each commit reads the few
        # versions since, not every version of the run.
        since = json.dumps(outcome["versions"])
        report["commits"].append({"seq": seq, "tasks": [r["task"] for r in batch], **outcome})
        progress.commits += 1
        progress.event(f"commit {seq}: {outcome['media_rows']} items, {outcome['failure_rows']} failures")

    def retry(task, why):
        attempts[task["task"]] += 1
        report["retries"] += 1
        progress.retries += 1
        tries = attempts[task["task"]]
        if len(task["files"]) > 1 and tries >= SPLIT_AFTER:
            parts = [{"task": f"{task['task']}.{i}", "files": [f]} for i, f in enumerate(task["files"])]
            progress.event(f"task {task['task']} failed {tries} times ({why}); splitting it into one-file tasks")
            todo.extend(parts)
        elif tries >= MAX_ATTEMPTS:
            progress.event(f"task {task['task']} failed {tries} times ({why}); giving up on it")
            report["failed_tasks"].append({"task": task["task"], "files": task["files"], "error": why})
        else:
            progress.event(f"task {task['task']} failed ({why}); retrying")
            todo.append(task)

    try:
        while todo or inflight:
            while idle and todo:
                actor, task = idle.pop(), todo.popleft()
                inflight[actor.run.remote(task["task"], task["files"])] = (actor, task)
                w = where[actor]
                progress.event(
                    f"task {task['task']} started on {w['node_ip']} (worker pid {w['pid']}, "
                    f"attempt {attempts[task['task']] + 1})"
                )
            if not inflight and not pings:
                raise RuntimeError("every worker is gone; re-run the same command to resume")
            ready, _ = ray.wait([*inflight, *pings], num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in pings:
                    actor = pings.pop(ref)
                    try:
                        where[actor] = ray.get(ref)
                        idle.append(actor)
                    except ray.exceptions.RayError:
                        pass  # gone for good (restarts exhausted)
                    continue
                actor, task = inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    # The worker died (killed, its node lost): the task goes to another; the
                    # actor takes work again once Ray has restarted it.
                    pings[actor.where.remote()] = actor
                    retry(task, f"worker died: {type(e).__name__}")
                    continue
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, TaskFailed) and not cause.retryable:
                        raise Refused(str(cause)) from None
                    idle.append(actor)
                    retry(task, str(cause or e).strip().splitlines()[-1])
                    continue
                idle.append(actor)
                summary, ray_where = result["summary"], result["ray"]
                for key in ("indexed", "already_indexed", "failed"):
                    report[key] += summary.get(key, 0)
                report["failures"].extend(summary.get("failures", []))
                report["placements"].append(
                    {
                        "task": task["task"],
                        "files": len(task["files"]),
                        "node_ip": ray_where["node_ip"],
                        "gpu_ids": ray_where["gpu_ids"],
                        "cuda_visible_devices": result["worker"].get("cuda_visible_devices"),
                        "worker_pid": result["worker"].get("pid"),
                        "attempt": attempts[task["task"]] + 1,
                    }
                )
                finished.append(result)
                progress.task_done(len(task["files"]))
            if len(finished) >= n or (finished and time.monotonic() - last_commit >= COMMIT_AFTER_S):
                commit(final=False)
        commit(final=True)
    finally:
        progress.close()
        for a in actors:
            ray.kill(a, no_restart=True)
    if report["failed_tasks"]:
        status = EXIT_RETRYABLE
    elif report["failed"]:
        status = EXIT_FILES_FAILED
    report["wall_seconds"] = time.monotonic() - started
    return status, report


def staged_empty(staged):
    return not (staged.get("media") or staged.get("segments") or staged.get("failures"))
