"""CPU time of processes from /proc, for the benchmarks that count all the work (Linux only)."""
from __future__ import annotations

import functools
import os
from pathlib import Path


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, …, utime at 11)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def tree_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process and its direct children, each with its reaped children:
    {"self": …, "children": …}; {} when the process is gone."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        own = proc_stat(pid)
    except OSError:
        return {}
    kids = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = proc_stat(int(entry))
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids += sum(int(v) for v in fields[11:15]) / tick
    return {"self": sum(int(v) for v in own[11:15]) / tick, "children": kids}


def service_pid(executable: str) -> int | None:
    """The pid of a machine's own daemon (PostgreSQL's postmaster, redis-server) by its path."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv0 = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
                ppid = int(proc_stat(int(entry))[1])
            except (OSError, UnicodeDecodeError):
                continue
            if argv0.split(" ")[0].endswith(executable) and ppid == 1:
                return int(entry)
    return None


def postgres_cpu() -> float:
    """CPU seconds of the machine's PostgreSQL so far: the postmaster, its backends and
    background processes, and the backends that have ended; 0.0 when it is not found."""
    pid = _postmaster()
    return sum(tree_cpu(pid).values()) if pid is not None else 0.0


@functools.lru_cache(maxsize=1)
def _postmaster() -> int | None:
    return service_pid("bin/postgres")  # looked up once: it stays for the run
