"""The long-lived worker: a Ray actor holding one `medley index-worker` process, so the models
load once per worker (per GPU), not once per task."""

import ctypes
import json
import os
import signal
import subprocess

import ray

# prctl(PR_SET_PDEATHSIG): the medley process dies with the actor that started it, so a killed
# actor leaves no orphan indexing files nobody will commit.
_PR_SET_PDEATHSIG = 1
# `medley`'s exit status for a refusal (configuration, a database of other models): retrying
# cannot help.
EXIT_REFUSED = 2


class TaskFailed(Exception):
    """A task that failed; `retryable` says whether another attempt may pass."""

    def __init__(self, message, retryable):
        super().__init__(message)
        self.retryable = retryable

    def __reduce__(self):
        return (TaskFailed, (str(self), self.retryable))


def _die_with_parent():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class IndexWorker:
    """Runs tasks ({task id, files}) through one `medley index-worker` process."""

    def __init__(self, command, env):
        self.command = command
        self.env = {**os.environ, **env}
        self.proc = None

    def where(self):
        """Where this worker runs: node address, GPU ids Ray gave it, process id."""
        context = ray.get_runtime_context()
        return {
            "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "pid": os.getpid(),
        }

    def _start(self):
        try:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=self.env,
                text=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as e:
            # Not installed on this node (or not executable): no retry will find it.
            raise TaskFailed(f"cannot start {self.command[0]} on {ray.util.get_node_ip_address()}: {e}", False) from e

    def run(self, task, files):
        """Index one task's files; its result line (what was staged), with where it ran."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.proc.stdin.write(json.dumps({"task": task, "files": files}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            code = self.proc.wait()
            self.proc = None
            raise TaskFailed(f"medley index-worker exited with status {code} during task {task}", code != EXIT_REFUSED)
        result = json.loads(line)
        if "error" in result:
            raise TaskFailed(f"task {task}: {result['error']}", bool(result.get("retryable", True)))
        result["ray"] = self.where()
        return result
