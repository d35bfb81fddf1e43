"""OS-level confinement for sandbox workers and the local Spark Connect server (Linux).

Three layers, each detected and skipped with a warning where the OS refuses it:
- a network namespace with only loopback (the server is started inside one with ``unshare -n``;
  workers join it with ``setns``), so neither can reach any other host;
- Landlock, so a process can write only below its scratch directory and read only system and
  interpreter paths (not the repository, home directories or the parent's files);
- rlimits on the worker (address space, CPU seconds, file size, open files, no core dumps).
"""
from __future__ import annotations

import ctypes
import io
import os
import resource
import shutil
import sys
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000

#: Environment variables a sandboxed process keeps; everything else (tokens, keys) is dropped.
SAFE_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "JAVA_HOME", "SPARK_HOME", "OPENBLAS_CORETYPE",
            "OPENBLAS_L2_SIZE")


@dataclass(frozen=True)
class Limits:
    """Per-worker resource limits (bytes / seconds / counts)."""

    address_space: int = 6 * 1024**3
    file_size: int = 64 * 1024**2
    open_files: int = 512


def scrubbed_env(home: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment minus everything not on :data:`SAFE_ENV` (no secrets leak)."""
    env = {k: os.environ[k] for k in SAFE_ENV if k in os.environ}
    env.update({"HOME": home, "TMPDIR": home, "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(extra or {})
    return env


def can_unshare_network() -> bool:
    """Whether ``unshare -n`` works here (root or user namespaces) and ``ip`` can raise lo."""
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    import subprocess

    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True)
    return probe.returncode == 0


def enter_network_namespace(path: str) -> None:
    """Move the calling thread into the namespace at ``path`` (call before any thread starts)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def landlock_available() -> bool:
    try:
        import landlock

        return landlock.landlock_abi_version() >= 1
    except Exception:  # no module, old kernel, seccomp-filtered syscall: all mean "not here"
        return False


def system_read_paths() -> list[str]:
    """Paths an interpreter or JVM needs to read: system dirs and the Python installation."""
    paths = ["/usr", "/lib", "/lib64", "/bin", "/sbin", "/proc", "/sys", "/dev", "/etc/ssl",
             "/etc/ld.so.cache", "/etc/localtime", "/etc/hosts", "/etc/nsswitch.conf",
             "/etc/resolv.conf", "/etc/passwd", "/etc/group", "/etc/java-17-openjdk",
             "/etc/alternatives", sys.prefix, sys.base_prefix, os.path.realpath(sys.executable)]
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        paths.append(java_home)
    return sorted({p for p in paths + python_import_paths() if os.path.exists(p)})


def python_import_paths() -> list[str]:
    """Where this interpreter imports installed code from beyond its prefix: site directories
    and ``PYTHONPATH`` (spark-submit puts pyspark.zip there; Databricks keeps pyspark outside the
    interpreter's prefix). The working directory is left out on purpose."""
    import site

    paths = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    paths += [user] if isinstance(user, str) else []
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != "."]
    return [os.path.realpath(p) for p in paths]


def restrict_filesystem(read_paths: list[str], write_paths: list[str]) -> None:
    """Landlock: the calling thread (and what it execs) may read ``read_paths`` and write only
    below ``write_paths``. Call before any thread starts: Landlock binds the calling thread."""
    from landlock import FSAccess, Ruleset

    ruleset = Ruleset()  # handles every access right the kernel knows: deny by default
    file_read = FSAccess.READ_FILE | FSAccess.EXECUTE
    for path in read_paths:  # directory-only rights on a file are EINVAL, hence the split
        ruleset.allow(path, rules=file_read | FSAccess.READ_DIR if os.path.isdir(path) else file_read)
    for path in write_paths:
        ruleset.allow(path)  # full rights beneath the scratch directory
    if os.path.exists("/dev/null"):
        ruleset.allow("/dev/null", rules=FSAccess.READ_FILE | FSAccess.WRITE_FILE)
    ruleset.apply()


def apply_rlimits(limits: Limits) -> None:
    """Bound the worker's memory, files and core dumps (CPU time is set per job)."""
    resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def set_cpu_budget(seconds: float) -> None:
    """Allow ``seconds`` more CPU time from now (SIGXCPU, then the parent replaces the worker)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    soft = int(spent + seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


class CappedText(io.TextIOBase):
    """A candidate's stdout: keeps the first ``cap`` characters and counts the rest (output size
    is a resource like memory: a print loop must not fill the parent's pipe or memory)."""

    def __init__(self, cap: int = 8192) -> None:
        self.cap, self.parts, self.size = cap, [], 0

    def write(self, text: str) -> int:
        if self.size < self.cap:
            self.parts.append(text[: self.cap - self.size])
        self.size += len(text)
        return len(text)

    def value(self) -> str:
        return "".join(self.parts)
