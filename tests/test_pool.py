"""The pool builds each backend once, outside any lock another backend waits on, and remembers a failed build."""
from __future__ import annotations

import threading
import time

import pytest

from reliability.errors import BackendError
from reliability.services import pool as pool_module
from reliability.services import Services, Settings


@pytest.fixture
def slow_failure(monkeypatch):
    """qwen2-audio takes 1.5 s to fail (a checkpoint that is not here); every build is counted."""
    real, builds = pool_module.get_backend, []

    def build(name, **kwargs):
        builds.append(name)
        if name == "qwen2-audio":
            time.sleep(1.5)
            raise BackendError("qwen2-audio: cannot load 'Qwen/Qwen2-Audio-7B-Instruct' (OSError: not in the cache)")
        return real(name, **kwargs)

    monkeypatch.setattr(pool_module, "get_backend", build)
    return builds


def test_a_backend_failing_to_load_blocks_no_other_and_its_failure_is_remembered(tmp_path, slow_failure):
    services = Services.build(Settings(str(tmp_path / "lab.db"), str(tmp_path / "data"), backend="scripted", backend_kwargs={"reply": "A"}))
    errors = []
    failing = threading.Thread(target=lambda: errors.append(pytest.raises(BackendError, services.pool.get_backend, "qwen2-audio")))
    failing.start()
    time.sleep(0.2)  # the failing build is under way
    start = time.perf_counter()
    assert services.pool.get_backend().name == "scripted"
    assert time.perf_counter() - start < 0.5  # not behind the other build
    failing.join()
    start = time.perf_counter()
    with pytest.raises(BackendError) as again:
        services.pool.get_backend("qwen2-audio")
    assert time.perf_counter() - start < 0.1 and slow_failure.count("qwen2-audio") == 1
    assert "cannot load" in str(again.value) and "tried again in" in str(again.value) and "\n" not in str(again.value)


def test_concurrent_first_requests_build_a_backend_once(tmp_path, slow_failure):
    services = Services.build(Settings(str(tmp_path / "lab.db"), str(tmp_path / "data"), backend="scripted", backend_kwargs={"reply": "A"}))
    got = []
    threads = [threading.Thread(target=lambda: got.append(services.pool.get_backend())) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert slow_failure.count("scripted") == 1 and len({id(b) for b in got}) == 1


def test_a_failure_is_tried_again_after_the_retry_time(tmp_path, slow_failure):
    services = Services.build(Settings(str(tmp_path / "lab.db"), str(tmp_path / "data"), retry_failed_s=0.0))
    for _ in range(2):
        with pytest.raises(BackendError, match="cannot load"):
            services.pool.get_backend("qwen2-audio")
    assert slow_failure.count("qwen2-audio") == 2


def test_requests_may_name_the_menus_backends_and_those_the_app_allows(tmp_path):
    plain = Services.build(Settings(str(tmp_path / "a.db"), str(tmp_path / "a"), backend="scripted"))
    assert plain.pool.backend_allowed("scripted") and not plain.pool.backend_allowed("openai")
    allowing = Services.build(Settings(str(tmp_path / "b.db"), str(tmp_path / "b"), backend="scripted", extra_backends=("openai",)))
    assert allowing.pool.backend_allowed("openai")
