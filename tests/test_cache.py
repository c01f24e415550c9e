from __future__ import annotations

import multiprocessing as mp

from attn_core.cache import ResultStore, data_dir, make_key


def _writer(path: str, start: int) -> None:
    store = ResultStore(path)
    for i in range(start, start + 50):
        store.put(f"k{i}", bytes([i % 256]) * 100)


def test_processes_share_the_store(tmp_path):
    path = str(tmp_path / "s.sqlite")
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, i * 50)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = ResultStore(path)
    got = store.get_many([f"k{i}" for i in range(200)])
    assert len(got) == 200 and got["k7"] == bytes([7]) * 100


def test_bounded_size_evicts_least_recently_used(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite", max_bytes=10_000)
    for i in range(10):
        store.put(f"k{i}", b"x" * 1000)
    store.get("k0")  # recently used: survives
    store.put("big", b"y" * 3000)
    store.evict()
    assert store.size_bytes() <= 10_000
    assert store.get("k0") is not None and store.get("k1") is None


def test_data_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CHUMOKU_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d" and (tmp_path / "d").is_dir()
    assert make_key("a", "bc") != make_key("ab", "c")


def test_clear(tmp_path):
    store = ResultStore(tmp_path / "s.sqlite")
    store.put("a", b"1")
    store.clear()
    assert store.count() == 0
