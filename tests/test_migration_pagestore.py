"""The agent's page store: pages by (pid, address), rebuilt or adopted as pages-N.img."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from capture.errors import MigrationError
from runtime_shim.migration.engine import PAGE_SIZE, PageStore

BASE = 0x7F0000000000


def page(tag: int) -> bytes:
    return tag.to_bytes(4, "little") * (PAGE_SIZE // 4)


def fill(store: PageStore, pid: int, first: int, tags: list[int]) -> None:
    store.put(pid, [(BASE + first * PAGE_SIZE, len(tags))], memoryview(b"".join(page(t) for t in tags)))


def expected(tags: list[int]) -> bytes:
    return b"".join(page(t) for t in tags)


@pytest.fixture
def store(tmp_path: Path) -> PageStore:
    (tmp_path / "images").mkdir()
    return PageStore(tmp_path / "pages.bin")


def test_resend_overwrites_in_place(store: PageStore) -> None:
    fill(store, 1, 0, [1, 2, 3])
    fill(store, 1, 1, [20])
    assert store.size == 3 * PAGE_SIZE
    assert store.get(1, BASE + PAGE_SIZE) == page(20)


def test_build_image_in_pagemap_order(store: PageStore, tmp_path: Path) -> None:
    fill(store, 1, 5, [5, 6])
    fill(store, 1, 0, [0, 1])
    fill(store, 2, 0, [99])  # another address space
    fd = os.open(tmp_path / "images" / "pages-1.img", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        store.build_image(1, [BASE, BASE + PAGE_SIZE, BASE + 5 * PAGE_SIZE, BASE + 6 * PAGE_SIZE], fd)
    finally:
        os.close(fd)
    assert (tmp_path / "images" / "pages-1.img").read_bytes() == expected([0, 1, 5, 6])
    with pytest.raises(MigrationError, match=r"page 0x7f0000007000 of pid 1 was never sent"):
        store.build_image(1, [BASE + 7 * PAGE_SIZE], fd)


def test_adopt_moves_only_misplaced_pages(store: PageStore, tmp_path: Path) -> None:
    fill(store, 1, 0, [0, 1, 2, 3, 4])      # round 1, address order
    fill(store, 1, 2, [22])                  # resent in place
    fill(store, 1, 9, [9])                   # appended later (slot 5)
    order = [BASE + i * PAGE_SIZE for i in (0, 1, 2, 4, 9)]  # page 3 vanished, 9 is new
    dfd = os.open(tmp_path / "images", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert store.adopt(1, order, dfd, "pages-1.img")
    finally:
        os.close(dfd)
    assert (tmp_path / "images" / "pages-1.img").read_bytes() == expected([0, 1, 22, 4, 9])
    assert not (tmp_path / "pages.bin").exists()
    with pytest.raises(MigrationError, match="already became a pages image"):
        fill(store, 1, 0, [7])


def test_adopt_declines_shared_stores_and_big_shuffles(store: PageStore, tmp_path: Path) -> None:
    fill(store, 1, 0, [0, 1])
    fill(store, 2, 0, [5])
    dfd = os.open(tmp_path / "images", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not store.adopt(1, [BASE, BASE + PAGE_SIZE], dfd, "pages-1.img")
        other = PageStore(tmp_path / "other.bin")
        other.MAX_MOVES = 1
        fill(other, 1, 0, [0, 1, 2])
        assert not other.adopt(1, [BASE + 2 * PAGE_SIZE, BASE + PAGE_SIZE, BASE], dfd, "pages-2.img")
        assert (tmp_path / "other.bin").exists() and not (tmp_path / "images" / "pages-2.img").exists()
    finally:
        os.close(dfd)
