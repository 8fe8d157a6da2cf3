"""Demo data: people, a creator and a brand with two agents, writing in Spanish and English."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import Progress

from directo.accounts import service as accounts
from directo.brands import service as brands
from directo.conversations import service as conversations
from directo.core.errors import NotFound

if TYPE_CHECKING:
    from directo.app import App

PASSWORD = "directo-demo-1"

ACCOUNTS = [
    ("lucia", "Lucía Fernández", "person"),
    ("sam.okafor", "Sam Okafor", "person"),
    ("diego_m", "Diego Martín", "person"),
    ("cocina.con.marta", "Marta · Cocina con Marta", "creator"),
    ("cafe.aurora", "Café Aurora", "brand"),
    ("sofia.aurora", "Sofía", "person"),
    ("tom.aurora", "Tom", "person"),
]

LOGINS = [
    ("lucia", "a person (writes in Spanish)"),
    ("sam.okafor", "a person (writes in English)"),
    ("diego_m", "a person with a pending message request"),
    ("cocina.con.marta", "a creator"),
    ("cafe.aurora", "a brand account (owner of its team)"),
    ("sofia.aurora", "an agent of Café Aurora"),
    ("tom.aurora", "an agent of Café Aurora"),
]

FOLLOWS = [("lucia", "sam.okafor"), ("sam.okafor", "lucia"), ("lucia", "cocina.con.marta"),
           ("cocina.con.marta", "cafe.aurora"), ("cafe.aurora", "cocina.con.marta")]

# (author, as brand, to, text)
THREADS: list[list[tuple[str, str | None, str, str]]] = [
    [("lucia", None, "sam.okafor", "¡Hola Sam! ¿Vienes el sábado al mercado?"),
     ("sam.okafor", None, "lucia", "Hi Lucía! Yes, I'll be there around 10."),
     ("lucia", None, "sam.okafor", "Perfecto, te espero en la entrada de la calle Mayor."),
     ("sam.okafor", None, "lucia", "Great, see you there 🙌")],
    [("lucia", None, "cafe.aurora", "Hola, pedí un café de Colombia el lunes y aún no ha "
      "llegado. El pedido es el 4821."),
     ("sofia.aurora", "cafe.aurora", "lucia", "¡Hola Lucía! Soy Sofía. Lo siento mucho: lo "
      "revisé y salió ayer, te llega mañana antes de las 14:00."),
     ("lucia", None, "cafe.aurora", "¡Genial, muchas gracias Sofía!")],
    [("sam.okafor", None, "cafe.aurora", "Do you ship the Aurora blend to Lisbon?"),
     ("tom.aurora", "cafe.aurora", "sam.okafor", "Hi Sam, Tom here. We do: 3-5 working days, "
      "and shipping is free over 30 €.")],
    [("cafe.aurora", None, "cocina.con.marta", "Hi Marta! We love your recipes. Would you "
      "like to try our new single-origin beans for a video?"),
     ("cocina.con.marta", None, "cafe.aurora", "¡Me encantaría! Send me the details and "
      "I'll propose a recipe.")],
    [("diego_m", None, "cocina.con.marta", "Hola Marta, me encantó tu receta de tortilla. "
      "¿Haces colaboraciones con escuelas?")],
]


async def seed(app: App, console: Console) -> None:
    """Create the demo data once; a data directory that already has it is left as it is."""
    await app.start()
    try:
        try:
            await accounts.find(app, ACCOUNTS[0][0])
            console.print("demo data already present")
            return
        except NotFound:
            pass
        steps = len(ACCOUNTS) + len(FOLLOWS) + 2 + sum(len(t) for t in THREADS)
        with Progress(console=console) as progress:
            task = progress.add_task("creating demo data", total=steps)
            rows = {}
            for handle, name, kind in ACCOUNTS:
                rows[handle] = await accounts.create_account(app, handle, PASSWORD, name, kind)
                progress.advance(task)
            for follower, followee in FOLLOWS:
                await accounts.set_following(app, rows[follower], followee, True)
                progress.advance(task)
            for agent in ("sofia.aurora", "tom.aurora"):
                await brands.put_member(app, rows["cafe.aurora"].id, "cafe.aurora", agent,
                                        "agent")
                progress.advance(task)
            for number, thread in enumerate(THREADS):
                for index, (author, as_brand, to, text) in enumerate(thread):
                    view, _ = await conversations.start(app, rows[author].id, to, as_brand)
                    await conversations.send(app, rows[author].id, view["id"],
                                             f"demo-{number}-{index}", text, None)
                    progress.advance(task)
    finally:
        await app.stop()
