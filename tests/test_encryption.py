"""Confidential at rest: no plaintext text in any database file, a private key file, the
environment's key taking precedence, key rotation, and unsend destroying the text."""

from __future__ import annotations

import stat
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import Connection, select

from directo.app import App
from directo.client import AsyncDirecto
from directo.conversations.store import conversations, messages
from directo.core import crypto
from tests.conftest import PASSWORD, Server
from tests.test_cli import open_data_dir, run_cli


def _found_in_files(data_dir: Path, needles: list[str]) -> set[str]:
    """Which needles appear in the raw bytes of any file of the data dir (but the key file)."""
    found = set()
    for path in data_dir.iterdir():
        if path.name == crypto.KEY_FILE or not path.is_file():
            continue
        raw = path.read_bytes()
        found |= {needle for needle in needles if needle.encode() in raw}
    return found


@pytest.mark.slow
async def test_database_files_hold_no_message_text(server_factory: Callable[..., Server],
                                                   ) -> None:
    server = server_factory()
    name = f"Ana {uuid.uuid4().hex}"  # display names are not secret: stored as they are
    sent_text, edited_text = f"sent {uuid.uuid4().hex}", f"edited {uuid.uuid4().hex}"
    ana, ben = AsyncDirecto(server.url), AsyncDirecto(server.url)
    await ana.signup("ana", PASSWORD, name)
    await ben.signup("ben", PASSWORD, "Ben")
    await ben.follow("ana")
    conversation_id = (await ana.start_conversation("ben"))["id"]
    message = await ana.send(conversation_id, sent_text)
    await ana.edit(message["id"], edited_text)
    await ben.send(conversation_id, "ok", reply_to=message["id"])
    assert (await ben.messages(conversation_id))["items"][0]["text"] == edited_text
    assert {path.name for path in server.data_dir.iterdir()} >= {"directo.db", "directo.db-wal"}

    needles = [name, sent_text, edited_text]
    assert _found_in_files(server.data_dir, needles) == {name}  # running: WAL and SHM too
    await ana.close()
    await ben.close()
    server.stop()
    assert _found_in_files(server.data_dir, needles) == {name}


async def _conversation_with_text(make: Callable[[], AsyncDirecto], text: str) -> str:
    ana, ben = make(), make()
    await ana.signup("ana", PASSWORD, "Ana")
    await ben.signup("ben", PASSWORD, "Ben")
    await ben.follow("ana")
    conversation_id = (await ana.start_conversation("ben"))["id"]
    await ana.send(conversation_id, text)
    return conversation_id


async def _texts(data_dir: Path, conversation_id: str, **settings: str) -> list[str | None]:
    """The conversation's texts as ben sees them, with the given master key settings."""
    async with open_data_dir(data_dir, **settings) as (_, make):
        ben = make()
        await ben.login("ben", PASSWORD)
        return [m["text"] for m in (await ben.messages(conversation_id))["items"]]


def _wrapped_keys(app: App) -> list[tuple[str, bytes]]:
    def read(conn: Connection) -> list[tuple[str, bytes]]:
        query = select(conversations.c.key_id, conversations.c.wrapped_key)
        return [(row.key_id, row.wrapped_key) for row in conn.execute(query)]

    return app.db.read_sync(read)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_key_file_is_private_and_the_environment_key_overrides_it(tmp_path: Path,
                                                                        ) -> None:
    data_dir = tmp_path / "data"
    async with open_data_dir(data_dir) as (_, make):
        key_file = data_dir / crypto.KEY_FILE
        assert _mode(key_file) == 0o600
        [file_key] = crypto.read_key_file(key_file)
        conversation_id = await _conversation_with_text(make, "under the file key")
    env_key = crypto.generate_key()
    async with open_data_dir(data_dir, master_key=env_key) as (app, make):
        assert app.keyring.primary_id == crypto.key_id(crypto.decode_key(env_key))
        carla = make()
        await carla.signup("carla", PASSWORD, "Carla")
        await carla.start_conversation("ana")
        key_ids = {key_id for key_id, _ in _wrapped_keys(app)}
    assert key_ids == {crypto.key_id(file_key), crypto.key_id(crypto.decode_key(env_key))}
    assert crypto.read_key_file(data_dir / crypto.KEY_FILE) == [file_key]
    assert await _texts(data_dir, conversation_id, master_key=env_key) == [None]
    assert await _texts(data_dir, conversation_id) == ["under the file key"]


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    starters = 16
    barrier = threading.Barrier(starters)

    def start(_: int) -> str:
        barrier.wait()
        return crypto.load_keyring(None, None, tmp_path).primary_id

    with ThreadPoolExecutor(starters) as pool:
        primary_ids = set(pool.map(start, range(starters)))
    [key] = crypto.read_key_file(tmp_path / crypto.KEY_FILE)
    assert primary_ids == {crypto.key_id(key)}
    assert [path.name for path in tmp_path.iterdir()] == [crypto.KEY_FILE]


@pytest.mark.slow
async def test_rotation_with_the_key_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with open_data_dir(data_dir) as (_, make):
        conversation_id = await _conversation_with_text(make, "rotate me")
    [old_key] = crypto.read_key_file(data_dir / crypto.KEY_FILE)

    rotated = run_cli("keys", "rotate", "--data-dir", str(data_dir))
    assert rotated.returncode == 0, rotated.stderr
    assert "re-wrapped 1 conversation keys" in rotated.stdout

    key_file = data_dir / crypto.KEY_FILE
    [new_key] = crypto.read_key_file(key_file)  # only the new key is left
    assert new_key != old_key and _mode(key_file) == 0o600
    assert await _texts(data_dir, conversation_id) == ["rotate me"]
    assert await _texts(data_dir, conversation_id,
                        master_key=crypto.encode_key(old_key)) == [None]
    async with open_data_dir(data_dir) as (app, _):
        wrapped_keys = _wrapped_keys(app)
    old_keyring = crypto.Keyring(old_key)
    for _, wrapped in wrapped_keys:  # the old key opens no stored data key
        with pytest.raises(InvalidTag):
            old_keyring.unwrap(old_keyring.primary_id, wrapped)


@pytest.mark.slow
async def test_rotation_with_environment_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old_key, new_key = crypto.generate_key(), crypto.generate_key()
    async with open_data_dir(data_dir, master_key=old_key) as (_, make):
        conversation_id = await _conversation_with_text(make, "rotate me too")

    forgot_old = run_cli("keys", "rotate", "--data-dir", str(data_dir),
                         DIRECTO_MASTER_KEY=new_key)
    assert forgot_old.returncode == 2
    assert "DIRECTO_PREVIOUS_MASTER_KEYS" in forgot_old.stderr
    assert "Traceback" not in forgot_old.stderr
    # While rolling over, servers run with the new key and the old one listed as previous.
    assert await _texts(data_dir, conversation_id, master_key=new_key,
                        previous_master_keys=old_key) == ["rotate me too"]
    rotated = run_cli("keys", "rotate", "--data-dir", str(data_dir),
                      DIRECTO_MASTER_KEY=new_key, DIRECTO_PREVIOUS_MASTER_KEYS=old_key)
    assert rotated.returncode == 0, rotated.stderr
    assert "re-wrapped 1 conversation keys" in rotated.stdout

    assert not (data_dir / crypto.KEY_FILE).exists()
    assert await _texts(data_dir, conversation_id, master_key=new_key) == ["rotate me too"]
    assert await _texts(data_dir, conversation_id, master_key=old_key) == [None]


async def test_unsend_destroys_the_text(app: App, signup) -> None:
    ana, ben = await signup("ana"), await signup("ben")
    await ben.follow("ana")
    conversation_id = (await ana.start_conversation("ben"))["id"]
    message = await ana.send(conversation_id, "I should not have said that")
    await ana.unsend(message["id"])

    def body(conn: Connection) -> bytes | None:
        return conn.execute(select(messages.c.body)
                            .where(messages.c.id == message["id"])).scalar_one()

    assert app.db.read_sync(body) is None
    [shown] = (await ben.messages(conversation_id))["items"]
    assert shown["text"] is None and shown["deleted_at"] is not None
