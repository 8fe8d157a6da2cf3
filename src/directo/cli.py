"""The ``directo`` command: serve, demo, migrate, keys, reports."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from directo import logs
from directo.app import App
from directo.config import Settings
from directo.core import crypto, migrate

cli = typer.Typer(help="Directo: private one-to-one direct messages.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)  # locals may hold keys
keys = typer.Typer(help="Master keys for encryption at rest.", no_args_is_help=True)
cli.add_typer(keys, name="keys")
console = Console()
errors = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="where SQLite and the key "
                                              "file live (DIRECTO_DATA_DIR)")]


def _settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    if data_dir is not None:
        os.environ["DIRECTO_DATA_DIR"] = str(data_dir)
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"DIRECTO_{name.upper()}"] = str(value)
    return Settings()


def _check_master_key(settings: Settings) -> None:
    """Stop with a clear message if the master key is unusable; on first run this creates the
    data directory's key file, before any worker starts."""
    try:
        crypto.load_keyring(settings.master_key, settings.previous_master_keys,
                            settings.data_dir)
    except crypto.MasterKeyError as error:  # its message never holds key material
        errors.print(f"[red]{error}[/red] (check DIRECTO_MASTER_KEY and "
                     "DIRECTO_PREVIOUS_MASTER_KEYS)")
        raise typer.Exit(2) from None


def _app(settings: Settings) -> App:
    _check_master_key(settings)
    return App(settings)


def _migrate(settings: Settings) -> None:
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)


def _serve(settings: Settings, workers: int) -> None:
    logs.configure(settings.log_level)
    _check_master_key(settings)
    url = settings.effective_database_url
    if settings.database_url is None:
        _migrate(settings)
    elif not migrate.is_current(url):
        console.print("[red]The database schema is not current: run `directo migrate`.[/red]")
        raise typer.Exit(1)
    from directo import workers as supervisor

    options: dict[str, Any] = {
        **supervisor.SERVER_OPTIONS, "host": settings.host, "port": settings.port,
        "access_log": False, "log_level": settings.log_level,
        "log_config": logs.uvicorn_log_config(), "timeout_graceful_shutdown": 5}
    if workers == 1:
        supervisor.serve("directo.app:create_asgi", {**options, "factory": True})
        return

    hub = None
    if not settings.broker_url:  # the workers share a hub instead of Redis
        from directo.core.hub import HubThread

        hub = HubThread().start()
        os.environ["DIRECTO_HUB_SOCKET"] = str(hub.path)  # the workers' settings read it
    try:
        supervisor.run("directo.app:create_asgi", {**options, "factory": True}, workers,
                       settings.worker_hang_seconds)
    except supervisor.PortTaken as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    finally:
        if hub is not None:
            hub.stop()


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    data_dir: DataDir = None,
    workers: Annotated[int, typer.Option(help="processes sharing the port (one per core); "
                                         "without Redis they share a hub this process runs",
                                         envvar="DIRECTO_WORKERS", min=1)] = 1,
) -> None:
    """Run the HTTP and WebSocket server."""
    _serve(_settings(data_dir, host=host, port=port), workers)


@cli.command()
def demo(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    data_dir: Annotated[Path, typer.Option("--data-dir")] = Path("./directo-demo"),
    no_serve: Annotated[bool, typer.Option("--no-serve", help="seed, then exit")] = False,
) -> None:
    """Create a data directory with demo accounts and conversations, then serve it."""
    from directo.demo import LOGINS, seed

    settings = _settings(data_dir, host=host, port=port)
    _migrate(settings)
    app = _app(settings)
    asyncio.run(seed(app, console))
    table = Table(title="Demo logins (password for all: directo-demo-1)")
    for column in ("handle", "who"):
        table.add_column(column)
    for handle, who in LOGINS:
        table.add_row(handle, who)
    console.print(table)
    if not no_serve:
        console.print(f"Open http://{settings.host}:{settings.port}/ (API docs at /docs)")
        _serve(settings, 1)


@cli.command(name="migrate")
def migrate_command(data_dir: DataDir = None) -> None:
    """Bring the database schema up to date."""
    settings = _settings(data_dir)
    _migrate(settings)
    console.print("schema is current")


@keys.command("generate")
def keys_generate() -> None:
    """Print a new random master key (for DIRECTO_MASTER_KEY)."""
    typer.echo(crypto.generate_key())


@keys.command("rotate")
def keys_rotate(data_dir: DataDir = None) -> None:
    """Re-wrap every conversation key under a new master key.

    With the data directory's key file (stop the server first: it holds the old key only), a
    new key is generated and the old one removed once nothing needs it. With
    DIRECTO_MASTER_KEY, without downtime: restart every server with the new key in
    DIRECTO_MASTER_KEY and the old one in DIRECTO_PREVIOUS_MASTER_KEYS, run this with the same
    two settings, then drop DIRECTO_PREVIOUS_MASTER_KEYS.
    """
    from directo.conversations.service import rewrap_keys

    settings = _settings(data_dir)
    key_file = settings.data_dir / crypto.KEY_FILE
    file_mode = not settings.master_key
    if file_mode:
        _check_master_key(settings)
        old = crypto.read_key_file(key_file) if key_file.exists() else []
        new = crypto.decode_key(crypto.generate_key())
        crypto.write_key_file(key_file, [new, *old])  # a crash from here on loses no key
    app = _app(settings)
    try:
        count = rewrap_keys(app)
    except crypto.MasterKeyError as error:
        errors.print(f"[red]{error}[/red]: list every older key in "
                     "DIRECTO_PREVIOUS_MASTER_KEYS while rotating")
        raise typer.Exit(2) from None
    finally:
        app.db.close()
    if file_mode:
        crypto.write_key_file(key_file, [new])
    console.print(f"re-wrapped {count} conversation keys under master key "
                  f"{app.keyring.primary_id}")


@cli.command()
def reports(data_dir: DataDir = None) -> None:
    """List reported conversations and messages, for moderation."""
    from directo.conversations.service import moderation_reports

    app = _app(_settings(data_dir))
    try:
        rows = moderation_reports(app)
    finally:
        app.db.close()
    table = Table(title=f"{len(rows)} reports")
    for column in ("when", "reporter", "conversation", "message", "reason", "message text"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["created_at"], row["reporter"], row["conversation_id"],
                      row["message_id"] or "", row["reason"], row["message_text"] or "")
    console.print(table)


def main() -> None:
    cli()
