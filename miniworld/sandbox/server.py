"""Where candidate code gets its Spark: a local Spark Connect server the product starts and
stops, or any ``sc://host:port`` server (Databricks Connect included) given by the user.

The local server is the ``SparkConnectServer`` class from the jar in the pyspark wheel, started
with ``spark-submit``, bound to 127.0.0.1, and (where the OS allows) confined: its own network
namespace with only loopback, Landlock limiting reads to system/JVM/Spark paths and writes to its
scratch directory, no Python for server-side UDFs, and a scrubbed environment.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from miniworld.sandbox import isolation

log = logging.getLogger(__name__)

#: Settings that make a tiny-data local engine fast (see FIELD-NOTES: Spark 4.2).
DEFAULT_CONF = {
    "spark.sql.shuffle.partitions": "1",
    "spark.default.parallelism": "1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.catalogImplementation": "in-memory",
    "spark.sql.adaptive.enabled": "false",
    "spark.connect.grpc.binding.address": "127.0.0.1",
}


class SparkStartError(RuntimeError):
    """The local Spark Connect server did not come up (Java missing, port in use, crash)."""


@dataclass(frozen=True)
class SparkEndpoint:
    """How a worker reaches Spark: a Connect URL and, for a confined local server, the network
    namespace it must join first."""

    remote: str
    netns: str | None = None
    isolated: bool = False


def spark_home() -> str:
    """The Spark installation whose ``bin/spark-submit`` and jars start the local server.

    Usually the pyspark package's folder. Under ``spark-submit`` pyspark is imported from
    ``SPARK_HOME/python/lib/pyspark.zip``, so look up from the module to the first folder that
    is a Spark installation (and at ``SPARK_HOME`` last)."""
    import pyspark

    here = Path(pyspark.__file__).resolve().parent
    env = [Path(os.environ["SPARK_HOME"])] if os.environ.get("SPARK_HOME") else []
    for candidate in [here, *here.parents, *env]:
        if (candidate / "bin" / "spark-submit").is_file() and (candidate / "jars").is_dir():
            return str(candidate)
    raise SparkStartError(f"no Spark installation (bin/spark-submit and jars/) found from {here}; set SPARK_HOME")


def check_java() -> str:
    """Path of ``java`` or a one-line error saying what to install."""
    java = shutil.which("java", path=os.environ.get("PATH"))
    if java is None and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        java = str(candidate) if candidate.exists() else None
    if java is None:
        raise SparkStartError("Java 17+ is required by Spark and was not found on PATH "
                              "(install openjdk-17-jre-headless or set JAVA_HOME)")
    return java


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalConnectServer:
    """A Spark Connect server on loopback, owned by this process (use as a context manager)."""

    master: str = "local[2]"
    port: int | None = None
    isolate: bool = True
    driver_memory: str = "1g"
    conf: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 90.0
    endpoint: SparkEndpoint | None = None
    warnings: list[str] = field(default_factory=list)
    _proc: subprocess.Popen | None = None
    _scratch: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> SparkEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SparkEndpoint:
        java = check_java()
        self._scratch = tempfile.TemporaryDirectory(prefix="miniworld-spark-")
        scratch = self._scratch.name
        netns = self.isolate and isolation.can_unshare_network()
        if self.isolate and not netns:
            self.warnings.append("network namespaces unavailable: the Spark server keeps host network")
        port = self.port or (15002 if netns else _free_port())
        if not netns and self.port and not _port_free(self.port):
            raise SparkStartError(f"port {self.port} on 127.0.0.1 is already in use")
        conf = {**DEFAULT_CONF, "spark.connect.grpc.binding.port": str(port),
                "spark.local.dir": scratch, "spark.sql.warehouse.dir": f"{scratch}/warehouse",
                "spark.driver.extraJavaOptions": f"-Djava.io.tmpdir={scratch} -XX:-UsePerfData",
                **self.conf}
        cmd = [f"{spark_home()}/bin/spark-submit", "--class",
               "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", self.master,
               "--driver-memory", self.driver_memory, "--name", "miniworld"]
        for key, value in conf.items():
            cmd += ["--conf", f"{key}={value}"]
        if netns:
            cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *cmd]
        java_home = str(Path(os.path.realpath(java)).parents[1])
        env = isolation.scrubbed_env(scratch, {"SPARK_HOME": spark_home(), "JAVA_HOME": java_home,
                                               "PYSPARK_PYTHON": "/bin/false",  # no server-side UDFs
                                               "SPARK_LOCAL_DIRS": scratch})
        reads: list[str] | None = None
        if self.isolate and isolation.landlock_available():
            reads = isolation.system_read_paths() + [spark_home(), java_home, "/etc"]
        elif self.isolate:
            self.warnings.append("Landlock unavailable: the Spark server's file access is not confined")
        for w in self.warnings:
            log.warning(w)
        logfile = open(f"{scratch}/server.log", "wb")  # noqa: SIM115 - lives as long as the server
        self._proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env,
                                      cwd=scratch, start_new_session=True,
                                      preexec_fn=_server_preexec(reads, [scratch]))
        self._wait_ready(f"{scratch}/server.log")
        self.endpoint = SparkEndpoint(f"sc://127.0.0.1:{port}",
                                      f"/proc/{self._proc.pid}/ns/net" if netns else None,
                                      isolated=bool(netns))
        return self.endpoint

    def _wait_ready(self, logpath: str) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            text = Path(logpath).read_text(errors="replace")
            if "Spark Connect server started" in text:
                return
            if self._proc.poll() is not None:
                tail = " | ".join(text.strip().splitlines()[-3:])[-400:]
                raise SparkStartError(f"Spark Connect server exited with {self._proc.returncode}: {tail}")
            time.sleep(0.2)
        self.stop()
        raise SparkStartError(f"Spark Connect server not ready after {self.start_timeout_s:.0f}s")

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._proc = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _server_preexec(reads: list[str] | None, writes: list[str]):
    """A ``preexec_fn`` run in the child before it execs the JVM: die with the owner (the server
    runs in its own session, so nothing else would stop it after a SIGKILL of the trainer), then
    Landlock when ``reads`` is given. Both survive exec, and spark-submit execs the JVM in place."""
    import ctypes

    if reads is not None:
        import landlock  # noqa: F401 - load before fork so the child imports nothing
    libc = ctypes.CDLL(None, use_errno=True)
    owner = os.getpid()

    def prepare() -> None:
        if sys.platform.startswith("linux"):
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: fires when the owner dies
            if os.getppid() != owner:  # the owner died before prctl took effect
                os._exit(1)
        if reads is not None:
            isolation.restrict_filesystem(reads, writes)

    return prepare


def endpoint_for(spark_remote: str | None, probe_timeout_s: float = 15.0) -> SparkEndpoint:
    """A user-given ``sc://`` endpoint, validated and probed; None means "start the local server".

    The probe matters: a worker's Connect client retries a dead or non-Spark address for minutes,
    so without it a typo in ``--spark-remote`` surfaced as a worker timeout (exit 1) after 90 s."""
    if not spark_remote or not spark_remote.startswith("sc://"):
        raise ValueError(f"--spark-remote must look like sc://host:port, got {spark_remote!r}")
    probe(spark_remote, probe_timeout_s)
    return SparkEndpoint(spark_remote)


def probe(spark_remote: str, timeout_s: float = 15.0) -> None:
    """Raise :class:`SparkStartError` unless a gRPC (HTTP/2) server answers at ``spark_remote``.

    Uses pyspark's own channel builder, so TLS and token parameters of the URL apply."""
    import grpc
    from pyspark.sql.connect.client import DefaultChannelBuilder

    try:
        builder = DefaultChannelBuilder(spark_remote)
        host, _, port = builder.endpoint.rpartition(":")
        channel = builder.toChannel()
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's URL
        raise SparkStartError(f"--spark-remote {spark_remote}: {exc}") from None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:  # refused or unresolvable: say so now rather than after the timeout
        channel.close()
        raise SparkStartError(f"--spark-remote {spark_remote}: cannot connect ({exc.strerror or exc})") from None
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise SparkStartError(f"--spark-remote {spark_remote}: no Spark Connect (gRPC) server answered "
                              f"within {timeout_s:.0f}s (nothing listens there, or another service "
                              "holds the port)") from None
    finally:
        channel.close()


if __name__ == "__main__":  # manual check: python -m miniworld.sandbox.server
    logging.basicConfig(level=logging.INFO)
    with LocalConnectServer() as ep:
        print(ep, file=sys.stderr)
