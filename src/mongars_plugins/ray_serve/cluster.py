"""Finding, starting and joining the Ray cluster that runs the replicas.

With ``ray.address`` unset, ``mongars ray deploy`` starts a private Ray on
this machine: ``ray start --head --block`` in its own session, listening on
loopback only (Ray's single-machine mode), with free ports (never Redis's
6379), no dashboard and its own token. Its address, process id and token are
kept in ``<data dir>/ray/cluster.json``, so later commands and the ``ray``
backend find it, and ``mongars ray shutdown`` stops what it started. With
``ray.address`` set, monGARS joins that cluster and never stops it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from mongars_core.errors import BackendUnavailableError, ConfigurationError
from mongars_core.settings import Settings
from mongars_plugins.ray_serve._ray import require_ray
from mongars_plugins.ray_serve.settings import RAY

logger = logging.getLogger(__name__)

Report = Callable[[str], None]
"""``report(message)``: one line of progress for a person watching."""

STATE_FILE = "cluster.json"
STARTED_LINE = "Ray runtime started"
_LAUNCH = (
    "import subprocess, sys\n"
    "with open(sys.argv[1], 'wb') as log:\n"
    "    head = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log,\n"
    "                            stderr=subprocess.STDOUT, start_new_session=True)\n"
    "print(head.pid)\n"
)


def log_report(message: str) -> None:
    """The default ``report``: progress goes to the log."""
    logger.info("%s", message)


def state_dir(settings: Settings) -> Path:
    """Where the local cluster's record and token live."""
    return settings.data_dir / "ray"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LocalCluster:
    """A Ray head that monGARS started on this machine, as recorded on disk."""

    address: str
    pid: int
    temp_dir: str
    token_path: str
    log_path: str
    num_cpus: float | None
    num_gpus: float | None

    def environment(self) -> dict[str, str]:
        """What Ray must see when imported to reach this cluster (head and drivers)."""
        return {
            # Single-machine mode: every Ray process binds to 127.0.0.1.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": self.token_path,
            "RAY_USAGE_STATS_ENABLED": "0",
            # Stop at once on SIGTERM: there is no other node to drain work to.
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        }

    def alive(self) -> bool:
        if not _running(self.pid):
            return False
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return True  # no /proc to tell a reused process id apart
        return b"ray" in cmdline and b"--head" in cmdline

    @classmethod
    def find(cls, directory: Path) -> LocalCluster | None:
        """The cluster recorded in ``directory`` if it still runs; a stale record is removed."""
        path = directory / STATE_FILE
        try:
            cluster = cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            logger.warning("ignoring the unreadable Ray cluster record %s: %s", path, exc)
            return None
        if cluster.alive():
            return cluster
        logger.info("the local Ray cluster recorded in %s is gone; forgetting it", path)
        path.unlink(missing_ok=True)
        return None

    @classmethod
    def start(
        cls,
        directory: Path,
        *,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        timeout_s: float = 120.0,
        report: Report = log_report,
    ) -> LocalCluster:
        """Start a Ray head in the background and record it in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        token_path = directory / "auth_token"
        descriptor = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # the token lets anyone run code on the cluster
        with os.fdopen(descriptor, "w") as token:
            token.write(secrets.token_hex(32))
        # Short, so Ray's unix socket paths stay under the 107-byte limit.
        temp_dir = tempfile.mkdtemp(prefix="mongars-ray-")
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ]
        if num_cpus is not None:
            command.append(f"--num-cpus={_whole(num_cpus, 'CPUs')}")
        if num_gpus is not None:
            command.append(f"--num-gpus={_whole(num_gpus, 'GPUs')}")
        log_path = directory / "head.log"
        cluster = cls(
            address=f"127.0.0.1:{port}",
            pid=0,
            temp_dir=temp_dir,
            token_path=str(token_path),
            log_path=str(log_path),
            num_cpus=num_cpus,
            num_gpus=num_gpus,
        )
        report(f"starting a local Ray at {cluster.address} (loopback only, no dashboard)")
        # Launched through a short-lived parent, so the head is no child of this
        # process: it outlives the command, until `mongars ray shutdown`.
        launched = subprocess.run(
            [sys.executable, "-c", _LAUNCH, str(log_path), *command],
            env={**os.environ, **cluster.environment()},
            capture_output=True,
            text=True,
            check=False,
        )
        if launched.returncode != 0:
            raise BackendUnavailableError(f"could not launch Ray: {launched.stderr.strip()}")
        cluster = cls(**{**asdict(cluster), "pid": int(launched.stdout)})
        deadline = time.monotonic() + timeout_s
        while STARTED_LINE not in log_path.read_text(errors="replace"):
            if not _running(cluster.pid):
                shutil.rmtree(temp_dir, ignore_errors=True)
                raise BackendUnavailableError(f"the local Ray did not start: {_tail(log_path)}")
            if time.monotonic() > deadline:
                cluster.stop()
                raise BackendUnavailableError(
                    f"the local Ray did not start within {timeout_s:.0f} s: {_tail(log_path)}"
                )
            time.sleep(0.2)
        (directory / STATE_FILE).write_text(json.dumps(asdict(cluster), indent=2) + "\n")
        return cluster

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the head and every Ray process it started, then forget the cluster."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)  # `ray start --block` tears the node down
        deadline = time.monotonic() + timeout_s
        while _running(self.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _running(self.pid):
            logger.warning("the local Ray (pid %d) ignored SIGTERM; killing it", self.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)  # its whole session: raylet, GCS, workers
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        record = Path(self.log_path).parent / STATE_FILE
        try:
            if json.loads(record.read_text()).get("pid") == self.pid:
                record.unlink()
        except (OSError, ValueError):
            pass


def _whole(value: float, what: str) -> int:
    if value != int(value):
        raise ConfigurationError(f"a local Ray needs a whole number of {what}, not {value}")
    return int(value)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) + f" (log: {path})"


@dataclass(frozen=True)
class Connection:
    """The cluster this process is connected to as a Ray driver."""

    address: str
    local: LocalCluster | None
    """The cluster monGARS started on this machine, or ``None`` for one joined by address."""
    started: bool
    """Whether this call started the local cluster."""
    ray: ModuleType


def connect(
    settings: Settings,
    *,
    start: bool = False,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    report: Report = log_report,
) -> Connection:
    """Connect this process to the cluster of ``MONGARS_RAY__ADDRESS`` (blocking).

    ``ray.address`` set: join it. Unset: join the local cluster recorded in
    the data directory, or start one when ``start`` is true; otherwise
    raise :class:`BackendUnavailableError` naming ``mongars ray deploy``.
    """
    directory = state_dir(settings)
    local = LocalCluster.find(directory)
    started = False
    address = settings.section(RAY).address
    if address is None:
        if local is None:
            if not start:
                raise BackendUnavailableError(
                    "no Ray cluster to use: run `mongars ray deploy` to start a local one, "
                    "or set MONGARS_RAY__ADDRESS"
                )
            local = LocalCluster.start(
                directory, num_cpus=num_cpus, num_gpus=num_gpus, report=report
            )
            started = True
        address = local.address
    elif local is not None and address != local.address:
        local = None
    environment = local.environment() if local is not None else None
    if "ray" not in sys.modules or not require_ray(environment).is_initialized():
        _probe(address)  # before importing Ray, which a wrong address then leaves alone
    ray = require_ray(environment)
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address != "auto" and not address.startswith("ray://") and current != address:
            raise ConfigurationError(
                f"this process is already connected to the Ray cluster at {current}, not {address}"
            )
        return Connection(address=current, local=local, started=started, ray=ray)
    report(f"connecting to Ray at {address}")
    try:
        ray.init(
            address=address,
            configure_logging=False,  # a library doesn't configure logging
            log_to_driver=False,  # replica logs stay in Ray's log folder
        )
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as exc:
        raise BackendUnavailableError(f"cannot connect to Ray at {address}: {exc}") from exc
    return Connection(
        address=ray.get_runtime_context().gcs_address, local=local, started=started, ray=ray
    )


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on an address nothing answers at (``ray.init`` retries for minutes)."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():  # "auto" and the like: Ray finds the address
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise BackendUnavailableError(
            f"nothing answers at the Ray address {address}: {exc}"
        ) from exc


def disconnect() -> None:
    """Leave the cluster (if connected); the cluster itself keeps running."""
    if "ray" in sys.modules:
        ray = require_ray()
        if ray.is_initialized():
            ray.shutdown()
