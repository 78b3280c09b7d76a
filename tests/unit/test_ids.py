"""Hot-path ids: valid version-7 UUIDs, unique, ordered by time, fresh random bits after a fork."""

from __future__ import annotations

import os
import uuid

import pytest

from helio_proxy import ids


def test_ids_are_version_7_uuids_unique_and_ordered_by_time() -> None:
    made = [ids.new_uuid() for _ in range(20_000)]
    assert all(value.version == 7 and value.variant == uuid.RFC_4122 for value in made)
    assert len(set(made)) == len(made)
    stamps = [value.int >> 80 for value in made]
    assert stamps == sorted(stamps)


def test_an_id_is_the_uuid_its_constructor_would_make() -> None:
    """Built without ``UUID.__init__``: equal, hashing, ordering, pickling and reading the same."""
    import pickle

    made = ids.new_uuid()
    again = uuid.UUID(int=made.int)
    assert (made == again, hash(made) == hash(again), str(made) == str(again)) == (True, True, True)
    assert made.is_safe is again.is_safe is uuid.SafeUUID.unknown
    assert pickle.loads(pickle.dumps(made)) == again  # noqa: S301
    assert uuid.UUID(str(made)) == made
    assert made < uuid.UUID(int=made.int + 1)
    with pytest.raises(TypeError):
        made.int = 1  # type: ignore[misc]  # immutable like every UUID


def test_hex_ids_have_the_form_of_uuid4_hex() -> None:
    value = ids.new_hex()
    assert len(value) == 32
    assert uuid.UUID(hex=value).version == 7


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_its_own_random_bits() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, ids.new_hex().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = uuid.UUID(hex=os.read(read, 64).decode())
    os.close(read)
    mine = ids.new_uuid()
    process_bits = ((1 << 76) - 1) & ~((1 << 32) - 1)  # rand_a and the random part of rand_b
    assert child.int & process_bits != mine.int & process_bits
