"""Breakpoints (hostapp.testing.Breakpoint, the hostapp_breakpoint fixture) on real threads."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import textwrap
import threading

import pytest

from hostapp.testing import Breakpoint

BANK = '''
import threading

class Account:
    def __init__(self, balance):
        self.balance = balance

    def withdraw(self, amount):
        if self.balance >= amount:      # check
            audit(self, amount)         # ... something between the check and the act
            self.balance -= amount      # act
            return True
        return False

def audit(account, amount):
    return amount

def worker_loop(stop, account):
    while not stop.is_set():
        account.withdraw(0)
        stop.wait(0.001)

async def handle(n):
    await step(n)
    return n

async def step(n):
    return n
'''


@pytest.fixture
def bank(tmp_path, monkeypatch):
    (tmp_path / "bank.py").write_text(textwrap.dedent(BANK), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    sys.modules.pop("bank", None)
    import bank

    yield bank
    sys.modules.pop("bank", None)


def test_a_check_then_act_race_is_reproduced_every_time(bank):
    for _ in range(5):  # deterministic: the same outcome every round
        account = bank.Account(100)
        with Breakpoint(bank, "audit") as bp:
            first = bp.start_thread(account.withdraw, 80)
            bp.wait()  # first checked (100 >= 80) and is held in audit()
            assert account.balance == 100
            second = bp.start_thread(account.withdraw, 80)
            bp.wait()  # second checked too, before first acted
            assert bp.held == 2
            bp.release()
            bp.join()
        assert (first.result, second.result) == (True, True)
        assert account.balance == -60  # overdrawn: the race
        assert bp.hits == 2


def test_a_return_breakpoint_holds_after_the_body_ran(bank):
    account = bank.Account(100)
    with Breakpoint(bank.Account, "withdraw", event="return") as bp:
        thread = bp.start_thread(account.withdraw, 30)
        bp.wait(timeout=10)
        assert account.balance == 70 and thread.is_alive()  # acted, held before returning
        bp.release()
        bp.join()
    assert thread.result is True


def test_wait_times_out_naming_the_target(bank):
    with Breakpoint("bank.audit") as bp:
        with pytest.raises(TimeoutError) as excinfo:
            bp.wait(timeout=0.05)
    assert "Breakpoint bank.audit (call) was not hit within 0.05 s" in str(excinfo.value)
    assert "0 hit(s) so far" in str(excinfo.value)


def test_hits_from_a_thread_the_test_did_not_start_and_the_stackframe(bank):
    account = bank.Account(10)
    stop = threading.Event()
    worker = threading.Thread(target=bank.worker_loop, args=(stop, account))
    worker.start()  # running before the breakpoint exists
    try:
        with Breakpoint(bank.Account, "withdraw", block=False) as bp:
            frame = bp.wait(timeout=10)
            bp.wait(timeout=10)
            bp.wait(timeout=10)
            assert bp.hits >= 3
            assert frame.f_locals["amount"] == 0
            assert frame.f_locals["self"] is account
            assert bp.stackframe is not None
    finally:
        stop.set()
        worker.join(10)


def test_a_condition_picks_the_hits(bank):
    account = bank.Account(100)
    with Breakpoint(bank, "audit", condition=[1, 2], block=False) as bp:
        for _ in range(4):
            account.withdraw(1)
        assert (bp.calls, bp.hits) == (4, 2)


def test_async_wait_does_not_block_the_loop(bank):
    async def main():
        with Breakpoint(bank, "step") as bp:
            task = asyncio.ensure_future(bank.handle(3))
            frame = await bp.async_wait(timeout=10)
            assert frame.f_locals["n"] == 3
            assert await task == 3
            with pytest.raises(TimeoutError):
                await bp.async_wait(timeout=0.05)

    asyncio.run(main())


def test_the_fixture_releases_held_threads_at_teardown(tmp_path):
    """A failing test with a held thread ends; the next test runs."""
    (tmp_path / "bank.py").write_text(textwrap.dedent(BANK), encoding="utf-8")
    (tmp_path / "test_held.py").write_text(textwrap.dedent('''
        import bank

        def test_fails_while_a_thread_is_held(hostapp_breakpoint):
            bp = hostapp_breakpoint(bank, "audit", timeout=600)
            account = bank.Account(100)
            thread = bp.start_thread(account.withdraw, 10)
            bp.wait()
            assert bp.held == 1
            assert False, "failing on purpose while the thread is held"

        def test_next():
            assert bank.Account(1).withdraw(1)
    '''), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_held.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    )
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
