"""Input pipeline and decoded-image cache: same pixels as a plain decode, bounded prefetch, LRU cap."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from adbench import image_cache, input_pipeline
from adbench.data import load_image, load_images
from adbench.errors import AdbenchError
from adbench.runner import Runner, RunSpec
from adbench.store import ResultsStore

from .helpers import tiny_registry, write_tiny_dataset


def write_pngs(folder, n: int, size=(40, 30)) -> list:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture()
def cache(tmp_path):
    """A fresh cache for this test, restored to the default afterwards."""
    image_cache.configure(directory=tmp_path / "cache")
    yield image_cache.active()
    image_cache.configure()


def test_batches_equal_plain_decode_in_order(tmp_path, cache):
    paths = write_pngs(tmp_path / "img", 7)
    plain = torch.stack([load_image(p, 24) for p in paths])
    for _ in range(2):  # cold, then from the cache
        batches = list(input_pipeline.image_batches(paths, 24, batch_size=3, workers=2))
        assert [len(b) for b in batches] == [3, 3, 1]
        assert torch.equal(torch.cat(batches), plain)
    assert (cache.misses, cache.hits) == (7, 7)
    assert torch.equal(load_images([type("S", (), {"image_path": p})() for p in paths], 24), plain)


def test_prefetch_is_bounded_by_a_few_batches(tmp_path, monkeypatch):
    paths = write_pngs(tmp_path / "img", 20)
    decoded = []
    real = input_pipeline._decode_into
    monkeypatch.setattr(input_pipeline, "_decode_into", lambda *a: decoded.append(1) or real(*a))
    consumed = 0
    for batch in input_pipeline.image_batches(paths, 8, batch_size=2, prefetch=2, workers=2):
        time.sleep(0.01)  # the model's turn: decoding runs ahead meanwhile, up to the window
        consumed += len(batch)
        assert len(decoded) <= consumed + 2 * 2  # this batch given away; two more ahead at most
    assert consumed == 20 and len(decoded) == 20


def test_cache_key_follows_content_and_size(tmp_path, cache):
    (path,) = write_pngs(tmp_path / "img", 1)
    first = input_pipeline.load_all([path], 16)
    input_pipeline.load_all([path], 20)  # another size: another entry
    assert cache.misses == 2
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(path)  # rewritten file: new digest
    assert not torch.equal(input_pipeline.load_all([path], 16), first)
    assert cache.misses == 3
    assert len(list(cache.directory.glob("*/*.npy"))) == 3


def test_truncated_entry_is_decoded_again(tmp_path, cache):
    (path,) = write_pngs(tmp_path / "img", 1)
    expected = input_pipeline.load_all([path], 16)
    (entry,) = cache.directory.glob("*/*.npy")
    entry.write_bytes(entry.read_bytes()[:50])  # a crash elsewhere mid-write (not via os.replace)
    assert torch.equal(input_pipeline.load_all([path], 16), expected)
    assert cache.misses == 2 and not list(cache.directory.glob("*/.*.tmp"))


def test_trim_evicts_least_recently_used(tmp_path):
    paths = write_pngs(tmp_path / "img", 4)
    c = image_cache.ImageCache(tmp_path / "c", max_bytes=10**9)
    digests = [f"{i:02d}" + "ab" * 15 for i in range(4)]
    for i, (p, d) in enumerate(zip(paths, digests)):
        c.load(p, d, 16)
        os.utime(c.entry(d, 16), ns=(i * 10**9, i * 10**9))  # entry 0 the oldest
    c.load(paths[0], digests[0], 16)  # a read makes entry 0 the most recent
    one = c.entry(digests[0], 16).stat().st_size
    c.max_bytes = 2 * one
    assert c.trim() == 2 * one
    assert [c.entry(d, 16).exists() for d in digests] == [True, False, False, True]


def test_unreadable_image_is_one_line_error_naming_it(tmp_path, cache):
    paths = write_pngs(tmp_path / "img", 3)
    paths[1].write_bytes(b"not a png")
    with pytest.raises(AdbenchError, match=r"cannot read image .*01\.png"):
        list(input_pipeline.image_batches(paths, 16, batch_size=2))


def _metrics(store: ResultsStore) -> dict:
    return {r["category"]: r["metrics"] for r in store.iter_records()}


@pytest.mark.parametrize("protocol", ["few_shot", "batch_zero_shot"])
def test_run_numbers_identical_with_and_without_cache(tmp_path, monkeypatch, protocol):
    home = tmp_path / "home"
    monkeypatch.setenv("ADBENCH_HOME", str(home))
    write_tiny_dataset(tmp_path / "data")
    reg = tiny_registry()
    spec = dict(methods=["median_dev"], datasets=["tiny"], roots={"tiny": str(tmp_path / "data")})
    spec.update(progress=False, protocol=protocol, shots=(2,), seeds=(0,))
    stores = [ResultsStore(tmp_path / f"r{i}") for i in range(3)]
    try:
        Runner(RunSpec(**spec, image_cache=False), stores[0], reg).run()
        assert image_cache.active() is None and not (home / "image-cache").exists()
        Runner(RunSpec(**spec), stores[1], reg).run()  # cold: fills the cache
        assert list((home / "image-cache").glob("*/*.npy"))
        Runner(RunSpec(**spec), stores[2], reg).run()  # warm: served from it
        assert image_cache.active().hits > 0 and image_cache.active().misses == 0
    finally:
        image_cache.configure()
    assert _metrics(stores[0]) == _metrics(stores[1]) == _metrics(stores[2])


def test_cli_no_image_cache_switch():
    from adbench.cli import cli

    plain = CliRunner().invoke(cli, ["run", "--dump-config"])
    off = CliRunner().invoke(cli, ["run", "--no-image-cache", "--dump-config"])
    assert plain.exit_code == off.exit_code == 0, off.output
    assert "image_cache" not in plain.output and "image_cache = false" in off.output
