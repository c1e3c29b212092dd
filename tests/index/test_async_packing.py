"""The asyncio client packs commands as redis-py's sync client does (hiredis), and a long
run of same-length ASCII keys with one join: the same bytes either way, and a real
server answers them."""

from __future__ import annotations

import asyncio

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from verifier.lib.redis_client import KeyRun, _hiredis_packing, async_client, packs_key_runs

PACKING = _hiredis_packing(Connection)()

KEY = st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=12)


def _python_packed(*args: object) -> bytes:
    return b"".join(Connection().pack_command(*args))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(head=st.lists(st.one_of(KEY, st.binary(max_size=8), st.integers(), st.floats(allow_nan=False)), max_size=2),
       size=st.integers(min_value=0, max_value=30), count=st.integers(min_value=0, max_value=150),
       odd=st.one_of(st.none(), KEY), ascii_only=st.booleans())
def test_same_bytes_as_redis_py_packs(head: list[object], size: int, count: int, odd: str | None,
                                      ascii_only: bool) -> None:
    run = [("k" if ascii_only else "é") * size for _ in range(count)]
    if odd is not None and run:
        run[len(run) // 2] = odd  # a key of another length or alphabet in the run
    args = ("MGET", *head, *run)
    assert b"".join(PACKING.pack_command(*args)) == _python_packed(*args)


def test_a_bulk_mget_is_one_join() -> None:
    keys = [f"{{pv}}:g7:p:WP{i:016d}" for i in range(1000)]
    packed = PACKING.pack_command("MGET", b"{pv}:current", *keys)
    assert packed == [hiredis.pack_command((b"MGET", b"{pv}:current", *keys))]


def test_what_cannot_be_packed_is_a_data_error() -> None:
    with pytest.raises(DataError):
        PACKING.pack_command("SET", "k", None)
    with pytest.raises(DataError):
        PACKING.pack_command("MGET", None, *(["k" * 5] * 100))


def test_the_server_answers_a_uniform_run(redis_url: str) -> None:
    async def main() -> list[bytes | None]:
        client = async_client(redis_url)
        try:
            await client.mset({f"key:{i:04d}": f"v{i}" for i in range(200)})
            return await client.mget([b"other", *[f"key:{i:04d}" for i in range(200)]])  # type: ignore[no-any-return]
        finally:
            await client.aclose()

    values = asyncio.run(main())
    assert values == [None, *[f"v{i}".encode() for i in range(200)]]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(prefix=KEY, names=st.lists(KEY, max_size=120), same_length=st.booleans())
def test_a_key_run_packs_as_its_keys_would(prefix: str, names: list[str], same_length: bool) -> None:
    if same_length and names:
        names = [name.ljust(12, "x")[:12] for name in names]
    packed = b"".join(PACKING.pack_command("MGET", b"{pv}:current", KeyRun(prefix, names)))
    assert packed == _python_packed("MGET", b"{pv}:current", *[prefix + name for name in names])


def test_a_key_run_of_something_else_than_names_is_a_data_error() -> None:
    with pytest.raises(DataError):
        PACKING.pack_command("MGET", KeyRun("p:", ["a", 1]))  # type: ignore[list-item]


def test_the_server_answers_a_key_run_and_only_the_standalone_client_takes_one(redis_url: str) -> None:
    async def main() -> tuple[list[bytes | None], bool]:
        client = async_client(redis_url)
        try:
            await client.mset({f"p:{i:04d}": f"v{i}" for i in range(300)})
            names = [f"{i:04d}" for i in range(301)]  # the last one is not there
            return await client.execute_command("MGET", "other", KeyRun("p:", names)), packs_key_runs(client)
        finally:
            await client.aclose()

    values, takes = asyncio.run(main())
    assert takes
    assert values == [None, *[f"v{i}".encode() for i in range(300)], None]
    assert not packs_key_runs(object())


@settings(max_examples=300, deadline=None, derandomize=True)
@given(args=st.lists(st.one_of(KEY, st.binary(max_size=8), st.integers(), st.floats(allow_nan=False)),
                     min_size=0, max_size=12))
def test_the_sync_packer_packs_as_redis_py_does(args: list[object]) -> None:
    """The sync clients' packer hands every argument to hiredis (redis-py first runs a
    Python encoder over each): the same bytes as redis-py's own packing."""
    from verifier.lib.redis_client import _SyncHiredisPacker

    packer = _SyncHiredisPacker()
    assert b"".join(packer.pack("EVALSHA", *args)) == _python_packed("EVALSHA", *args)


def test_the_sync_packer_falls_back_for_what_hiredis_refuses(redis_url: str) -> None:
    from verifier.lib.redis_client import _SyncHiredisPacker, sync_client

    packer = _SyncHiredisPacker()
    assert b"".join(packer.pack("SET", "k", bytearray(b"v"))) == _python_packed("SET", "k", bytearray(b"v"))
    with pytest.raises(DataError):
        packer.pack("SET", "k", True)
    client = sync_client(redis_url)
    try:
        assert isinstance(client.connection_pool.connection_kwargs["command_packer"], _SyncHiredisPacker)
        client.set("packed", bytearray(b"\x00\xff"))
        assert client.get("packed") == b"\x00\xff"
        with pytest.raises(DataError):
            client.set("packed", None)  # type: ignore[arg-type]
    finally:
        client.close()
