"""tests/programs/memwriter.c: the benchmark workload holds its memory, writes at about its rate, counts.

Real process, real /proc: the resident set after start, the pages whose
contents changed between two reads of the buffer through /proc/PID/mem (each
rewrite stores a new sequence number, so a rewritten page always differs),
the counter file. Bands are broad (2-10 MB/s for 5 MB/s) because the box is
shared and noisy; the zero-rate run shows the page count is not vacuous.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.programs.build import build_memwriter
from tests.support.tools import require

PAGE = 4096
MIB = 32


@pytest.fixture(scope="module")
def memwriter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_memwriter(tmp_path_factory.mktemp("memwriter"))


def start(binary: Path, counter: Path, rate: int, spawn: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([str(binary), "--mib", str(MIB), "--rate-bytes", str(rate), "--counter", str(counter)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            close_fds=True)
    spawn.append(proc)
    deadline = time.monotonic() + 30
    while not counter.exists():  # the first value comes once the memory is filled
        assert proc.poll() is None, f"memwriter exited with {proc.returncode}"
        assert time.monotonic() < deadline, "memwriter wrote no counter in 30 s"
        time.sleep(0.01)
    return proc


def buffer_range(pid: int) -> tuple[int, int]:
    """The anonymous rw mapping of at least MIB MiB (the buffer)."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if fields[1].startswith("rw") and len(fields) == 5 and hi - lo >= MIB << 20:
            return lo, hi
    raise AssertionError(f"no {MIB} MiB anonymous mapping in /proc/{pid}/maps")


def snapshot(pid: int, lo: int, hi: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as fh:
        fh.seek(lo)
        data = fh.read(hi - lo)
    assert len(data) == hi - lo
    return data


def changed_pages(a: bytes, b: bytes) -> int:
    return sum(1 for off in range(0, len(a), PAGE) if a[off:off + PAGE] != b[off:off + PAGE])


def measure_rate(pid: int, seconds: float) -> float:
    lo, hi = buffer_range(pid)
    t0 = time.monotonic()
    first = snapshot(pid, lo, hi)
    t1 = time.monotonic()
    time.sleep(seconds)
    t2 = time.monotonic()
    second = snapshot(pid, lo, hi)
    t3 = time.monotonic()
    return changed_pages(first, second) * PAGE / ((t2 + t3) / 2 - (t0 + t1) / 2)


def counter(path: Path) -> int:
    text = path.read_text()
    assert text.endswith("\n") and text.strip().isdigit(), f"counter file holds {text!r}"
    return int(text)


def test_holds_memory_writes_at_rate_and_counts(memwriter: Path, tmp_path: Path,
                                                 spawn: list[subprocess.Popen[bytes]]) -> None:
    path = tmp_path / "c"
    proc = start(memwriter, path, 5_000_000, spawn)
    status = Path(f"/proc/{proc.pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    assert rss_kib >= MIB * 1024 * 0.95, f"VmRSS {rss_kib} KiB, expected about {MIB} MiB"
    # no descriptor kept open between counter writes: stdin/out/err only
    assert sorted(os.listdir(f"/proc/{proc.pid}/fd")) == ["0", "1", "2"]
    first = counter(path)
    rate = measure_rate(proc.pid, 1.0)
    assert 2e6 <= rate <= 10e6, f"memwriter rewrote {rate / 1e6:.2f} MB/s, asked for 5"
    later = counter(path)
    assert later > first, f"counter {first} then {later} over more than a second"


def test_zero_rate_changes_no_page(memwriter: Path, tmp_path: Path, spawn: list[subprocess.Popen[bytes]]) -> None:
    path = tmp_path / "c"
    proc = start(memwriter, path, 0, spawn)
    assert measure_rate(proc.pid, 0.5) == 0.0
    first = counter(path)
    time.sleep(0.3)
    assert counter(path) > first


@pytest.mark.parametrize("argv", [["--mib", "0"], ["--mib", "x"], ["--rate-bytes", "-1"], ["--bogus", "1"],
                                  ["--mib"]])
def test_bad_arguments_exit_2(memwriter: Path, argv: list[str]) -> None:
    assert subprocess.run([str(memwriter), *argv], timeout=10).returncode == 2


def test_lab_runs_memwriter_container() -> None:
    """Lab(workload="memwriter"): the runc container's process is memwriter, holds its memory, counts."""
    for tool in ("runc", "ip", "nsenter", "gcc"):
        require(tool)
    from runtime_shim.migration import netns
    from runtime_shim.migration.lab import Lab

    with Lab(memory_mib=16, workload="memwriter", rate_bytes=1_000_000, prefix="hetmig-test-") as lab:
        lab.start_container()
        first = lab.read_counter("a", wait=30)
        deadline = time.monotonic() + 30
        while lab.read_counter("a") < first + 2:
            assert time.monotonic() < deadline, "the memwriter container's counter does not advance"
            time.sleep(0.05)
        pid = lab.container_pid()
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:5] == [
            b"/bin/memwriter", b"--mib", b"16", b"--rate-bytes", b"1000000"]
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        assert rss_kib >= 16 * 1024 * 0.95
    assert not lab.tmp.exists()
    assert not [n for n in netns.list_netns() if lab.hosts.base in n]
    deadline = time.monotonic() + 10  # runc delete --force kills it; the reaping may lag a little
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{pid}")


def test_lab_refuses_unknown_workload() -> None:
    from capture.errors import MigrationError
    from runtime_shim.migration.lab import Lab

    with pytest.raises(MigrationError, match="workload='bogus' is not one of shell, memwriter"):
        Lab(workload="bogus")
