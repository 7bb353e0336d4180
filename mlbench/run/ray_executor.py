"""Run cells in parallel on a Ray cluster, each in a fresh worker process on its node.

Owns joining (or starting) the Ray cluster, the Ray resources a cell asks for (a GPU cell one GPU;
a CPU cell its whole node, through the custom node resource `mlbench_node`), the Ray task that runs
the SAME mlbench.run.launcher.run_cell on its node (fresh child process, same environment, timeout,
process-group kill, classification), bringing progress messages, the attempt record and (from a
node that does not see the run directory) the cell's files back to the driver, and turning a lost
node or Ctrl-C into attempt records. The driver alone appends to the store: the runner does, with
what `run` yields. The only module of mlbench that imports ray (it is imported only when the ray
executor is chosen). Must not import any ML framework.

Resources. Every node that may run cells declares `mlbench_node: 1` (a local cluster started here
does; on a cluster: `ray start ... --resources='{"mlbench_node": 1}'`). A CPU cell asks for
1/cells_per_node.cpu of it (default: all of it, so it holds its node alone, and waits for the GPU
cells there to finish); a GPU cell asks for one GPU plus 1/cells_per_node.gpu of it (default: a
sliver, so GPUs are the limit). Ray does the waiting; there is no lock of ours.

Files. A node that sees the run directory (the driver's token file is there: a local cluster, or
a shared filesystem) writes request.json, command.txt and the stderr log in place. Any other node
writes them to a scratch directory and ships them back with the record (the log's last
MAX_LOG_BYTES); the driver writes them into its run directory under the same relative paths.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import psutil
import ray

from ..host import gpu, sysinfo
from ..config import guards
from . import interrupts, launcher
from ..config.schema import ExecutorSettings
from ..errors import UserError
from .matrix import Cell

NODE_RESOURCE = "mlbench_node"
TOKEN_FILE = ".mlbench-node-token"
FILES_KEY = "_node_files"
MAX_LOG_BYTES = 4 * 1024 * 1024
STOP_GRACE_S = 1.0  # after a polite cancel (the task kills its worker group), before force
WAIT_S = 0.2
EVENT_DRIVEN_UP_TO = 64  # tasks in flight; above this the driver polls every BATCH_S
BATCH_S = 0.05
FORWARD_S = 0.5  # a node sends a cell's progress messages in batches, at most this often
GPU_SLIVER = 0.001  # a GPU cell's share of mlbench_node when cells_per_node.gpu is 0
LOCAL_OBJECT_STORE = 256 * 1024 * 1024
# Per node: MLBENCH_PYTHON_<FRAMEWORK>=/path/to/python overrides the config's interpreter there.
PYTHON_VAR = "MLBENCH_PYTHON_{}"
# Per node: MLBENCH_NODE_SHARED_FS=0 ships files back even if the run directory looks shared.
SHARED_FS_VAR = "MLBENCH_NODE_SHARED_FS"


# ------------------------------------------------------------------------------- on the node

def node_placement(gpu_ids: list[str]) -> dict:
    """Where this task runs: host, Ray node, the GPU(s) Ray assigned and the first one's UUID."""
    ctx = ray.get_runtime_context()
    first = gpu_ids[0] if gpu_ids else None
    return {"executor": "ray", "hostname": platform.node(), "node_id": ctx.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(), "gpu_ids": gpu_ids,
            "gpu_uuid": gpu.uuid(int(first)) if first is not None and first.isdigit() else None}


def _shares_run_dir(run_root: Path, token: str) -> bool:
    if os.environ.get(SHARED_FS_VAR) == "0":
        return False
    try:
        return (run_root / TOKEN_FILE).read_text().strip() == token
    except OSError:
        return False


def _node_cell(cell: Cell) -> Cell:
    python = os.environ.get(PYTHON_VAR.format(cell.framework.upper()))
    return dataclasses.replace(cell, python=python) if python else cell


def _node_env_failure(record: dict, cell: Cell, placement: dict) -> None:
    """A framework environment missing on this node is this node's fault: `failed` (rerun with
    --failed), not `skipped` (done) as it would be where the framework is not installed at all."""
    where = f"node {placement['hostname']} ({str(placement['node_id'])[:12]})"
    reason = str(record.get("reason") or "")
    if record["status"] == "crashed" and reason.startswith("could not start worker") and \
            not os.access(cell.python, os.X_OK):
        record.update(status="failed", reason=f"framework environment missing on {where}: "
                      f"interpreter {cell.python} not found")
    elif record["status"] == "skipped" and " is not installed in " in reason:
        record.update(status="failed",
                      reason=f"framework environment missing on {where}: {reason}")


def _collect(cell_dir: Path, root: Path) -> dict[str, str]:
    """The cell's files written on this node, by path relative to the run root."""
    files = {}
    for path in cell_dir.iterdir():
        if not path.is_file():
            continue
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - MAX_LOG_BYTES))
            files[str(path.relative_to(root))] = fh.read().decode("utf-8", "replace")
    return files


def cell_task(cell: Cell, cell_dir: str, token: str) -> Iterator[dict]:
    """The Ray task (a streaming generator): run one cell through the launcher on this node.
    Yields {"kind": "start"}, then {"kind": "messages"} (the protocol messages, batched every
    FORWARD_S: one Ray object per batch, not per message), then the record."""
    ctx = ray.get_runtime_context()
    gpu_ids = [str(g) for g in (ctx.get_accelerator_ids() or {}).get("GPU", [])]
    placement = node_placement(gpu_ids)
    target = Path(cell_dir)
    root = target.parent.parent
    scratch = None
    if not _shares_run_dir(root, token):
        scratch = Path(tempfile.mkdtemp(prefix="mlbench-cell-"))
        root = scratch / "run"
        target = root / "cells" / target.name
        target.mkdir(parents=True)
    cell = _node_cell(cell)
    yield {"kind": "start", "placement": placement, "at": _now()}
    stop = launcher.Stop()
    inbox: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        try:
            inbox.put(("record", launcher.run_cell(
                cell, target, stop, lambda m: inbox.put(("message", m)),
                assigned_gpu=gpu_ids[0] if gpu_ids else None)))
        except BaseException as exc:  # our bug or the node's disk: crashed, with the reason
            inbox.put(("error", f"{type(exc).__name__}: {exc}"))

    def on_cancel(signum, frame) -> None:  # ray.cancel(force=False) arrives as SIGINT
        stop.requested, stop.signal_name = True, "SIGINT"
        _kill_worker_groups()  # now, not when the launcher looks: force may follow at once

    try:
        old = signal.signal(signal.SIGINT, on_cancel)
    except ValueError:  # not the main thread: the finally below still stops the cell
        old = None
    runner = threading.Thread(target=work, name="mlbench-cell", daemon=True)
    runner.start()
    kind, value = "error", "no result"
    batch: list[dict] = []
    sent = time.monotonic()
    try:
        while True:
            try:
                kind, value = inbox.get(timeout=FORWARD_S)
            except queue.Empty:
                kind = "idle"
            if kind == "message":
                batch.append(value)
            elif kind != "idle":
                break
            if batch and time.monotonic() - sent >= FORWARD_S:
                yield {"kind": "messages", "msgs": batch}
                batch, sent = [], time.monotonic()
        if batch:
            yield {"kind": "messages", "msgs": batch}
    finally:
        if runner.is_alive():  # cancelled or closed early: the launcher kills the group
            stop.requested = True
            stop.signal_name = stop.signal_name or "SIGINT"
            runner.join()
        if old is not None:
            signal.signal(signal.SIGINT, old)
        if scratch is not None and kind != "record":  # failed or cancelled: nothing to ship
            shutil.rmtree(scratch, ignore_errors=True)
    if kind == "error":
        raise RuntimeError(value)
    record = value
    record["placement"] = placement
    _node_env_failure(record, cell, placement)
    if scratch is not None:
        try:
            record[FILES_KEY] = _collect(target, root)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    yield {"kind": "record", "record": record}


def _kill_worker_groups() -> None:
    """SIGKILL the process group of every worker this Ray worker started (the launcher starts
    each in its own session: group id == pid), grandchildren included."""
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return
    for child in children:
        try:
            if os.getpgid(child.pid) == child.pid:
                os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def node_info(pythons: dict[str, str]) -> dict:
    """What a node is: host facts (CPU, GPUs, driver) and the framework versions it has."""
    host = sysinfo.host()
    frameworks = {}
    for fw, python in pythons.items():
        python = os.environ.get(PYTHON_VAR.format(fw.upper())) or python
        frameworks[fw] = {"python": python, "version": sysinfo.framework_version(fw, python)}
    return {**host, "frameworks": frameworks}


def node_kind(info: dict | None) -> str:
    """A node's hardware-and-software kind: cells (and ceilings) compare only within one kind.
    CPU model, GPU models, framework versions; not the hostname."""
    if not info:
        return "unknown"
    gpus = ",".join(sorted(g.get("name", "?") for g in info.get("gpus") or [])) or "no GPU"
    fws = ",".join(f"{fw}={(v or {}).get('version')}" for fw, v in
                   sorted((info.get("frameworks") or {}).items()))
    return f"{info.get('cpu_model', '?')} | {gpus} | {fws}"


# ------------------------------------------------------------------------------- the driver

CONNECT_TIMEOUT_S = 30.0  # ray.init of an address that does not answer: an error after this
PROBE_TIMEOUT_S = 5.0  # the TCP reachability probe of a host:port address


def probe_address(address: str | None, where: str) -> None:
    """A host:port (or ray://host:port) address must accept a TCP connection: a mistyped port
    is an error at once, not after Ray's retries. `auto` and no address are Ray's to find."""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"Ray address {address!r} is not auto, host:port or ray://host:port",
                        where)
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else exc.strerror or str(exc)
        raise UserError(f"cannot reach the Ray cluster at {address!r}: {why}", where) from None


@dataclass
class _Flight:
    cell: Cell
    cell_dir: Path
    placement: dict | None = None
    started_at: str | None = None
    t0: float = 0.0
    hello: dict | None = None
    extra: dict = field(default_factory=dict)


class RayExecutor:
    """Cells as Ray tasks; records back in the order cells finish."""

    spans_nodes = True

    @classmethod
    def from_config(cls, config) -> "RayExecutor":
        """The config's executor settings; each framework's interpreter (a node may override it:
        MLBENCH_PYTHON_<FRAMEWORK>)."""
        pythons = {fw: (s.python if (s := config.framework_settings.get(fw)) and s.python
                        else sys.executable) for fw in config.frameworks}
        return cls(config.executor, pythons)

    def __init__(self, settings: ExecutorSettings, pythons: dict[str, str] | None = None):
        self.settings = settings
        self.pythons = pythons or {}
        self._connected = False
        self._owns_connection = False
        self._task = None
        self._nodes: list[dict] | None = None
        self._kinds: dict[str, str] = {}
        self._capacity: tuple[bool, bool] = (True, True)
        self._after_loss = False  # after a node loss, vanished capacity fails cells

    # -- connection ---------------------------------------------------------------------------
    def _connect(self) -> None:
        if self._connected:
            return
        where = "executor.address"
        address = self.settings.address
        probe_address(address, where)
        kwargs = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        if address:
            self._init(where, address=address, **kwargs)
        else:
            # "local": a new cluster here, never one someone else left running
            self._init(where, address="local", resources={NODE_RESOURCE: 1},
                       object_store_memory=LOCAL_OBJECT_STORE, **kwargs)
        self._connected = True
        self._task = ray.remote(cell_task)
        if not self._cell_nodes():
            self.close()
            raise UserError(f"no node of the Ray cluster declares the resource {NODE_RESOURCE};"
                            " start each node that may run cells with ray start ... "
                            f"--resources='{{\"{NODE_RESOURCE}\": 1}}'", where)

    def _init(self, where: str, **kwargs) -> None:
        """ray.init, bounded and interruptible: Ray retries an unanswering address inside C++
        for ever, where no Python signal handler runs, so joining a cluster runs in a thread of
        its own while this one waits (Ctrl-C and SIGTERM raise here: mlbench.run.interrupts) at
        most CONNECT_TIMEOUT_S."""
        if ray.is_initialized():
            return
        if kwargs.get("address") == "local":
            # starting a cluster here: Python drives it (its handlers run), and it must be the
            # main thread (from another one the new cluster's GCS is never reached)
            try:
                with interrupts.interruptible():
                    ray.init(**kwargs)
            except Exception as exc:  # noqa: BLE001 - RuntimeError, ValueError from ray.init
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise UserError(f"cannot start a Ray cluster here: {first}", where) from None
            self._owns_connection = True
            return
        outcome: list[BaseException | None] = []

        def connect() -> None:
            try:
                ray.init(**kwargs)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                outcome.append(exc)

        thread = threading.Thread(target=connect, name="mlbench-ray-init", daemon=True)
        limit = CONNECT_TIMEOUT_S
        deadline = time.monotonic() + limit
        with interrupts.interruptible():
            thread.start()
            while thread.is_alive() and time.monotonic() < deadline:
                thread.join(0.1)
                interrupts.reassert()  # Ray's core installs C-level handlers as it connects
        if thread.is_alive():
            raise UserError(f"the Ray cluster at {kwargs.get('address')!r} did not answer within "
                            f"{limit:g} s (a wrong host or port?)", where)
        exc = outcome[0] if outcome else RuntimeError("ray.init ended without an answer")
        if exc is not None:  # ConnectionError, RuntimeError, ValueError from ray.init
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserError(f"cannot start or join the Ray cluster: {first}", where) from None
        self._owns_connection = True

    def _cell_nodes(self) -> list[dict]:
        return [n for n in ray.nodes() if n.get("Alive")
                and (n.get("Resources") or {}).get(NODE_RESOURCE, 0) > 0]

    def close(self) -> None:
        if self._connected and self._owns_connection:
            ray.shutdown()
        self._connected = self._owns_connection = False

    # -- what the cluster is ------------------------------------------------------------------
    def describe(self) -> dict:
        """run.json's `executor`: every node that may run cells, with its CPU, GPUs (names,
        driver) and framework versions, measured on the node itself."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        self._connect()
        nodes = self._cell_nodes()
        probe = ray.remote(node_info)
        refs = [probe.options(num_cpus=0, max_retries=0, scheduling_strategy=
                              NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                              ).remote(self.pythons) for n in nodes]
        out = []
        for n, ref in zip(nodes, refs):
            res = n.get("Resources") or {}
            entry = {"hostname": n.get("NodeManagerHostname"), "node_id": n["NodeID"],
                     "node_ip": n.get("NodeManagerAddress"), "cpus": res.get("CPU", 0),
                     "gpus": res.get("GPU", 0), NODE_RESOURCE: res.get(NODE_RESOURCE)}
            try:
                with interrupts.interruptible():
                    entry["info"] = ray.get(ref, timeout=120)
            except Exception as exc:  # a node that cannot answer is still listed
                entry["info_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            out.append(entry)
        self._nodes = out
        self._kinds = {n["node_id"]: node_kind(n.get("info")) for n in out}
        return {"kind": "ray", "address": self.settings.address,
                "cells_per_node": self.settings.cells_per_node.model_dump(), "nodes": out}

    def on_each_kind(self, fn: Callable, *args) -> dict[str, dict]:
        """Run fn(*args) on one node of every node kind, holding that node alone with all its
        GPUs (nothing else runs there meanwhile): {kind: {"node_id", "hostname", "result" or
        "error"}}. For what must be measured where the cells run: ceilings, the gate."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        if self._nodes is None:
            self.describe()
        first: dict[str, dict] = {}
        for n in self._nodes or []:
            first.setdefault(self._kinds[n["node_id"]], n)
        task = ray.remote(fn)
        refs = {kind: task.options(
            num_cpus=0, num_gpus=n.get("gpus") or 0, max_retries=0, retry_exceptions=False,
            resources={NODE_RESOURCE: 1}, scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["node_id"], soft=False)).remote(*args) for kind, n in first.items()}
        out = {}
        for kind, ref in refs.items():
            n = first[kind]
            entry = {"node_id": n["node_id"], "hostname": n.get("hostname")}
            try:
                with interrupts.interruptible():  # a node kind's gate can take long
                    entry["result"] = ray.get(ref)
            except ray.exceptions.RayError as exc:
                text = str(exc).strip().splitlines()
                entry["error"] = f"{type(exc).__name__}: {(text or [''])[-1][:300]}"
            out[kind] = entry
        return out

    def kinds_elsewhere(self, driver_host: str | None) -> list[str]:
        """The node kinds whose node (the one on_each_kind picks) is not `driver_host` (None:
        every kind): the driver's own kind was measured by its own preflight already."""
        if self._nodes is None:
            self.describe()
        first: dict[str, dict] = {}
        for n in self._nodes or []:
            first.setdefault(self._kinds[n["node_id"]], n)
        return sorted(k for k, n in first.items()
                      if driver_host is None or n.get("hostname") != driver_host)

    def runs_cells_here(self) -> bool:
        """Whether the driver's host is one of the nodes that run cells (a local cluster, or a
        head that declares mlbench_node): only then does the driver measure the gate and the
        ceilings itself; otherwise they come from the cell nodes alone (on_each_kind)."""
        if self._nodes is None:
            self.describe()
        return any(n.get("hostname") == platform.node() for n in self._nodes or [])

    def launch(self, job: launcher.Job, job_dir: Path, stop: launcher.Stop,
               on_message: Callable[[dict], None] = lambda m: None) -> dict:
        """A gate or ceiling worker of the driver's own preflight (only when this host runs
        cells): the one spawner, here. Every node kind measures its own through on_each_kind
        (preflight.gate_here, preflight.ceilings_here), each with the same spawner on its node."""
        return launcher.launch(job, job_dir, stop, on_message)

    def options(self, cell: Cell) -> dict:
        """The Ray task options of a cell: its resources, and no retry ever (a benchmark rerun
        is explicit: --failed)."""
        cpn = self.settings.cells_per_node
        if cell.device.startswith("cuda"):
            share = _share(cpn.gpu) if cpn.gpu else GPU_SLIVER
            res = {"num_gpus": 1, "resources": {NODE_RESOURCE: share}}
        else:
            res = {"num_gpus": 0, "resources": {NODE_RESOURCE: _share(cpn.cpu)}}
        return {"num_cpus": 0, "max_retries": 0, "retry_exceptions": False, **res}

    # -- the sweep ----------------------------------------------------------------------------
    def run(self, cells: Iterable[Cell], cell_dir: Callable[[Cell], Path], stop: launcher.Stop,
            on_start: Callable[[Cell], None],
            on_message: Callable[[Cell, dict], None]) -> Iterator[dict]:
        self._connect()
        todo = deque(cells)
        if not todo:
            return
        token = uuid.uuid4().hex
        root = cell_dir(todo[0]).parent.parent
        guards.write_text(root / TOKEN_FILE, token)
        nodes = self._cell_nodes()
        self._capacity = self._read_capacity()
        window = max(8, 2 * sum(1 + int((n.get("Resources") or {}).get("GPU", 0))
                                for n in nodes))
        inflight: dict = {}
        lost_seen = 0
        while todo or inflight:
            if stop.requested:
                yield from self._stop(inflight, stop)
                return
            while todo and len(inflight) < window:
                cell = todo.popleft()
                missing = self._cannot_run(cell)
                if missing:
                    yield self._record(cell, *missing, None, None, None)
                    continue
                d = cell_dir(cell)
                gen = self._task.options(**self.options(cell)).remote(cell, str(d), token)
                inflight[gen] = _Flight(cell, d)
            refs = list(inflight)
            if len(refs) <= EVENT_DRIVEN_UP_TO:  # react to each item at once
                ready, _ = ray.wait(refs, num_returns=1, timeout=WAIT_S)
                if ready and len(refs) > 1:
                    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            else:  # ray.wait costs ~1 us per ref: take what is ready every BATCH_S instead
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=BATCH_S)
            for gen in ready:
                record = self._advance(gen, inflight[gen], stop, on_start, on_message, root)
                if record is not None:
                    del inflight[gen]
                    if record.get("reason") == "node lost":
                        lost_seen += 1
                    yield record
            if lost_seen:  # capacity changed: cells that no alive node can run fail now
                lost_seen = 0
                self._capacity = self._read_capacity()
                self._after_loss = True
                for gen, f in list(inflight.items()):
                    missing = self._cannot_run(f.cell) if f.placement is None else None
                    if missing:
                        ray.cancel(gen, force=True)
                        del inflight[gen]
                        yield self._record(f.cell, *missing, None, None, None)

    def _read_capacity(self) -> tuple[bool, bool]:
        """(any cell node alive, any of them with a GPU): read at the start and after a loss."""
        nodes = self._cell_nodes()
        return bool(nodes), any((n.get("Resources") or {}).get("GPU", 0) >= 1 for n in nodes)

    def _cannot_run(self, cell: Cell) -> tuple[str, str] | None:
        """(status, reason) for a cell no alive node can run: skipped when the cluster never had
        a GPU (like an absent device locally); failed when the nodes that could were lost."""
        any_node, any_gpu = self._capacity
        left = " left" if self._after_loss else ""
        if not any_node:
            return "failed", f"no node{left} in the Ray cluster declares mlbench_node"
        if cell.device.startswith("cuda") and not any_gpu:
            return ("failed" if self._after_loss else "skipped"), \
                f"device {cell.device}: no GPU{left} in the Ray cluster"
        return None

    def _advance(self, gen, flight: _Flight, stop: launcher.Stop,
                 on_start: Callable[[Cell], None],
                 on_message: Callable[[Cell, dict], None], root: Path) -> dict | None:
        """Take the next item of a cell's task; the attempt record when it is the last."""
        try:
            item = ray.get(next(gen))
        except StopIteration:
            return self._record(flight.cell, "crashed", "the Ray task ended without a record",
                                flight.placement, flight.started_at, flight.hello)
        except ray.exceptions.NodeDiedError:
            return self._lost(flight)
        except ray.exceptions.RayError as exc:
            if flight.placement and not self._alive(flight.placement["node_id"]):
                return self._lost(flight)
            if stop.requested:
                return self._record(flight.cell, "interrupted",
                                    f"stopped by {stop.signal_name or 'the user'}",
                                    flight.placement, flight.started_at, flight.hello)
            text = str(exc).strip().splitlines()
            reason = f"Ray task failed: {type(exc).__name__}: {(text or [''])[-1][:500]}"
            return self._record(flight.cell, "crashed", reason, flight.placement,
                                flight.started_at, flight.hello)
        kind = item["kind"]
        if kind == "start":
            flight.placement, flight.started_at, flight.t0 = item["placement"], item["at"], \
                time.monotonic()
            on_start(flight.cell)
            return None
        if kind == "messages":
            for msg in item["msgs"]:
                if msg.get("type") == "hello":
                    flight.hello = {k: v for k, v in msg.items()
                                    if k not in ("protocol", "type")}
                on_message(flight.cell, msg)
            return None
        record = item["record"]
        placement = record.get("placement") or {}
        placement["node_kind"] = self._kinds.get(placement.get("node_id"))
        files = record.pop(FILES_KEY, None)
        if files:
            self._write_files(root, files)
        return record

    def _write_files(self, root: Path, files: dict[str, str]) -> None:
        base = root.resolve()
        for rel, text in files.items():
            dest = root / rel
            if base not in dest.resolve().parents:  # a node's path never escapes the run dir
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            guards.write_text(dest, text)  # a planted link is refused, not written through

    def _alive(self, node_id: str) -> bool:
        return any(n["NodeID"] == node_id and n.get("Alive") for n in ray.nodes())

    def _lost(self, flight: _Flight) -> dict:
        return self._record(flight.cell, "crashed", "node lost", flight.placement,
                            flight.started_at, flight.hello)

    def _stop(self, inflight: dict, stop: launcher.Stop) -> Iterator[dict]:
        """Ctrl-C: cancel every task (the task stops its cell: the launcher kills the worker's
        process group), then force the stragglers (their Ray worker dies; the cell's worker dies
        with it, PR_SET_PDEATHSIG). Started cells are recorded interrupted; queued ones not."""
        for gen in inflight:
            try:
                ray.cancel(gen, force=False)
            except Exception:  # finished meanwhile
                pass
        if any(f.placement is not None for f in inflight.values()):
            time.sleep(STOP_GRACE_S)  # a cancelled task's end is not observable from here
        for gen in inflight:
            try:
                ray.cancel(gen, force=True)
            except Exception:
                pass
        for flight in inflight.values():
            if flight.placement is not None:
                yield self._record(flight.cell, "interrupted",
                                   f"stopped by {stop.signal_name or 'the user'}",
                                   flight.placement, flight.started_at, flight.hello)

    @staticmethod
    def _record(cell: Cell, status: str, reason: str, placement: dict | None,
                started_at: str | None, hello: dict | None) -> dict:
        """An attempt the driver records itself (node lost, interrupted, no capacity): the
        launcher's keys, with what is known."""
        now = _now()
        wall = None
        if started_at:
            wall = (datetime.fromisoformat(now) - datetime.fromisoformat(started_at)) \
                .total_seconds()
        return {
            "run_id": None, "cell_id": cell.cell_id, "repeat": cell.repeat,
            "fingerprint": cell.fingerprint, "framework": cell.framework,
            "model": cell.model.name, "model_label": cell.model.id_label,
            "model_options": cell.model.model_options, "device": cell.device,
            "batch_size": cell.batch_size, "precision": cell.precision, "command": None,
            "stderr_log": None, "started_at": started_at or now, "machine_before": None,
            "device_before": None, "status": status, "reason": reason, "exit_code": None,
            "signal": None, "ended_at": now, "wall_s": wall or 0.0, "hello": hello,
            "protocol_noise": None, "stderr_tail": None, "host_peak_rss_bytes": None,
            "metrics": None, "placement": placement,
        }


def _share(n: int) -> float:
    """1/n of mlbench_node in Ray's resolution (1e-4), rounded down: exactly n fit (n <= 64)."""
    return math.floor(10_000 / n) / 10_000


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
