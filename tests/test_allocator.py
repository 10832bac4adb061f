"""Freed tensor memory stays with a trial's process instead of going back to the kernel after every step."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ignite_mbo import trial
from ignite_mbo.config import TrialConfig
from ignite_mbo.tasks import Task

STEP = """
import ctypes, sys, torch
from ignite_mbo.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):  # glibc's mallinfo2(): bytes in mmapped blocks, free bytes kept in the heap
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "tuned":
    assert keep_freed_memory() and keep_freed_memory()  # once per process, idempotent
a = torch.ones(4, 1024, 1024); b = a * 2; c = a + b  # a step's pattern: three 16 MB tensors made and freed
mapped = libc.mallinfo2().hblkhd
del a, b, c
print(mapped >> 20, libc.mallinfo2().fordblks >> 20)
"""


def mebibytes_mapped_and_kept(mode: str) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", STEP, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    mapped, kept = map(int, done.stdout.split())
    return mapped, kept


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and mallinfo2")
def test_a_steps_tensors_come_from_the_heap_and_stay_there():
    plain, tuned = mebibytes_mapped_and_kept("plain"), mebibytes_mapped_and_kept("tuned")
    assert plain[0] >= 48 and plain[1] < 16, plain  # glibc's defaults: mmapped, then handed back
    assert tuned[0] < 16 and tuned[1] >= 48, tuned  # in the heap, and kept for the next step


def test_every_trial_keeps_freed_memory(ackley: Task, monkeypatch: pytest.MonkeyPatch):
    calls: list[bool] = []
    monkeypatch.setattr(trial, "keep_freed_memory", lambda: calls.append(True) or True)
    config = TrialConfig.parse(dict(task=ackley.task_id, baseline="grad-ascent", fidelity="quick",
                                    baseline_options=dict(epochs=1, solver_steps=2)))
    trial.run_trial(config, task=ackley)
    assert calls == [True]
