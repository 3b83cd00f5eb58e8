"""VPOP_QUEUE_URL=redis://... puts the job queue on a real Redis (scale-out mode)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not listen in 10 s"
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_jobs_go_through_redis(redis_url: str, tmp_path: Path) -> None:
    code = (
        "import vpop.jobs.queue as q\n"
        "from huey.storage import RedisStorage\n"
        "q.huey.flush()\n"
        "assert isinstance(q.opened_storage(), RedisStorage), q.opened_storage()\n"
        "q.enqueue_lease(9)\n"
        "assert q.huey.pending_count() == 1\n"
        "task = q.huey.dequeue()\n"
        "assert task.name.endswith('lease_task') and task.args == (9,)\n"
        "print('ok')\n"
    )
    env = {
        "VPOP_QUEUE_URL": redis_url,
        "VPOP_DATABASE_URL": f"sqlite:///{tmp_path / 'vpop.sqlite'}",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
