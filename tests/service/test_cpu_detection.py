"""How many CPUs the service may use: the cgroup quota (v1 and v2) and the affinity mask."""

from __future__ import annotations

import os
from pathlib import Path

from service.gunicorn_support import available_cpus, cgroup_cpu_quota


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_takes_the_tightest_limit_up_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "max 100000\n")
    write(root / "kubepods" / "cpu.max", "300000 100000\n")
    write(root / "kubepods" / "pod1" / "cpu.max", "150000 100000\n")
    proc = tmp_path / "proc_cgroup"
    write(proc, "0::/kubepods/pod1\n")
    assert cgroup_cpu_quota(root, proc) == 1.5
    write(root / "kubepods" / "pod1" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(root, proc) == 3.0


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "50000\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(root, tmp_path / "none") == 0.5
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(root, tmp_path / "none") is None


def test_no_cgroup_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path / "missing", tmp_path / "none") is None


def test_available_cpus_is_capped_by_quota_and_affinity(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    root = tmp_path / "cgroup"
    proc = tmp_path / "none"
    assert available_cpus(root, proc) == 4
    write(root / "cpu.max", "150000 100000\n")
    assert available_cpus(root, proc) == 2  # 1.5 CPUs: the second worker uses the half
    write(root / "cpu.max", "20000 100000\n")
    assert available_cpus(root, proc) == 1
    write(root / "cpu.max", "1600000 100000\n")
    assert available_cpus(root, proc) == 4  # the affinity mask is the smaller bound
