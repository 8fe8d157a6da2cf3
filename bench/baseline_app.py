"""The baseline: bare endpoints on Directo's stack (uvicorn + FastAPI + Pydantic) doing no
work, the ceiling every Directo figure is divided by.

- ``POST /send``: a small Pydantic body, validated, answered 201 (the send path without
  auth, database, encryption or events);
- ``GET /page``: a constant JSON page (a list without a database);
- ``WS /stream``: sends ``backlog`` frames of ``frame_bytes`` then ``ready`` (the resume path),
  then forwards what ``POST /push`` publishes on its ``channel`` (the delivery path), until
  the client leaves.

Served by ``python -m bench.baseline_app --port P [--workers N]`` from the repository
root, with the uvicorn settings and the process model of ``directo serve``.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from pydantic import BaseModel, Field

app = FastAPI(title="Directo benchmark baseline")
subscribers: dict[str, set[asyncio.Queue[str]]] = {}
PAGE = orjson.dumps({"items": [{"id": f"cnv_{n:021d}", "text": "x" * 600} for n in range(20)],
                     "next_cursor": "c" * 80})


class MessageIn(BaseModel):
    client_id: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=4000)


class MessageOut(BaseModel):
    client_id: str
    text: str


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/send", status_code=201)
async def send(body: MessageIn) -> MessageOut:
    return MessageOut(client_id=body.client_id, text=body.text)


@app.get("/page")
async def page() -> Response:
    return Response(PAGE, media_type="application/json")


@app.post("/push", status_code=201)
async def push(body: MessageIn, channel: str = "") -> MessageOut:
    frame = orjson.dumps({"type": "message.created", "data": body.model_dump()}).decode()
    for queue in subscribers.get(channel, ()):
        queue.put_nowait(frame)
    return MessageOut(client_id=body.client_id, text=body.text)


@app.websocket("/stream")
async def stream(websocket: WebSocket, backlog: int = 0, frame_bytes: int = 600,
                 channel: str = "") -> None:
    await websocket.accept()
    frame = orjson.dumps({"type": "message.created", "data": "x" * frame_bytes}).decode()
    queue: asyncio.Queue[str] = asyncio.Queue()
    subscribers.setdefault(channel, set()).add(queue)
    reader = asyncio.create_task(_until_closed(websocket, queue))
    try:
        for _ in range(backlog):
            await websocket.send_text(frame)
        await websocket.send_text('{"type":"ready"}')
        while (text := await queue.get()) != "":
            await websocket.send_text(text)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        subscribers[channel].discard(queue)
        reader.cancel()


async def _until_closed(websocket: WebSocket, queue: asyncio.Queue[str]) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()
    queue.put_nowait("")  # wake the sender so it ends


if __name__ == "__main__":  # as ``directo serve [--workers N]`` runs Directo
    import argparse

    from directo import workers as supervisor
    from directo.config import Settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    options = {**supervisor.SERVER_OPTIONS, "host": args.host, "port": args.port,
               "access_log": False, "log_level": "warning"}
    if args.workers == 1:
        supervisor.serve("bench.baseline_app:app", options)
    else:
        supervisor.run("bench.baseline_app:app", options, args.workers,
                       hang_seconds=Settings.model_fields["worker_hang_seconds"].default)
