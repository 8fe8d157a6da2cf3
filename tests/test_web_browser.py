"""The web app in a real browser: Playwright driving Debian's Chromium against a real
``directo serve``, with two people in two browser contexts."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import PASSWORD, need

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
XSS = "<img src=x onerror=alert(1)>"
WAIT_MS = 10_000
REFUSAL_LOGGED = re.compile(r"^Failed to load resource: the server responded with a status of 4")
OUTAGE_LOGGED = re.compile(r"net::ERR_(INTERNET_DISCONNECTED|CONNECTION_REFUSED|CONNECTION_RESET)"
                           r"|^WebSocket connection to .* failed")

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
expect.set_options(timeout=WAIT_MS)


class Watch:
    """What a page did that a user would not want: console errors, script dialogs, requests
    leaving the machine, server errors. A refusal the page shows inline (a 4xx answer, which
    Chromium also logs to the console) is expected behaviour, not a problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.in_outage = False

    @contextmanager
    def outage(self) -> Iterator[None]:
        """While the test cuts the network, failed connections are what should happen."""
        self.in_outage = True
        try:
            yield
        finally:
            self.in_outage = False

    def attach(self, context: Any) -> None:
        context.on("request", self._request)
        context.on("response", self._response)
        context.on("page", self._page)

    def _page(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, entry: Any) -> None:
        if entry.type == "error" and not REFUSAL_LOGGED.search(entry.text):
            if not (self.in_outage and OUTAGE_LOGGED.search(entry.text)):
                self.problems.append(f"console: {entry.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 500:
            self.problems.append(f"{response.status} from {response.url}")

    def _request(self, request: Any) -> None:
        host = urlsplit(request.url).hostname
        if request.url.startswith(("http", "ws")) and host != "127.0.0.1":
            self.problems.append(f"request left the machine: {request.url}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need(CHROMIUM.exists(), "Chromium is not installed at /usr/bin/chromium")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def watch() -> Iterator[Watch]:
    seen = Watch()
    yield seen
    assert seen.problems == []


@pytest.fixture
def person(browser: Any, watch: Watch) -> Iterator[Callable[..., Any]]:
    """``person(server, locale=..)``: a page in a browser context of its own."""
    contexts: list[Any] = []

    def make(locale: str = "en-US", timezone: str = "Europe/Madrid",
             viewport: dict[str, int] | None = None) -> Any:
        context = browser.new_context(locale=locale, timezone_id=timezone,
                                      viewport=viewport or {"width": 1200, "height": 760})
        watch.attach(context)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: _answer(watch, dialog))
        return page

    yield make
    for context in contexts:
        context.close()


def _answer(watch: Watch, dialog: Any) -> None:
    """Confirmations are accepted; anything else (an alert) means a script ran."""
    if dialog.type == "confirm":
        dialog.accept()
    else:
        watch.problems.append(f"unexpected {dialog.type}: {dialog.message}")
        dialog.dismiss()


def api(server: Any, token: str, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(method, f"{server.url}/api/v1{path}", json=body,
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code < 400, response.text
    return response.json() if response.content else None


def account(server: Any, handle: str, name: str, kind: str = "person") -> str:
    """Create an account through the API and return a bearer token for it."""
    httpx.post(f"{server.url}/api/v1/accounts", json={
        "handle": handle, "password": PASSWORD, "display_name": name, "kind": kind},
        timeout=10).raise_for_status()
    response = httpx.post(f"{server.url}/api/v1/sessions",
                          json={"handle": handle, "password": PASSWORD}, timeout=10)
    return str(response.json()["token"])


def log_in(page: Any, server: Any, handle: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label(re.compile("Username|Nombre de usuario")).fill(handle)
    page.get_by_label(re.compile("Password|Contraseña")).fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    expect(page).to_have_url(f"{server.url}/")


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


def message(page: Any, text: str) -> Any:
    return page.locator("#message-list .message", has_text=text)


def test_request_then_a_live_conversation_both_ways(server_factory, person) -> None:
    server = server_factory()
    ana, ben = person(), person()

    ben.goto(f"{server.url}/signup")
    ben.get_by_label("Display name").fill("Ben Ito")
    ben.get_by_label("Username").fill("ben")
    ben.get_by_label("Password").fill("short")
    ben.get_by_role("button", name="Sign up").click()
    expect(ben.locator("#e-password")).to_be_visible()  # the error sits next to its field
    ben.get_by_label("Password").fill(PASSWORD)
    ben.get_by_role("button", name="Sign up").click()
    expect(ben).to_have_url(f"{server.url}/")
    expect(ben.locator("#list-empty")).to_be_visible()

    account(server, "ana", "Ana Costa")
    log_in(ana, server, "ana")
    ana.get_by_label("Username to write to").fill("nobody_here")
    ana.get_by_role("button", name="Start").click()
    expect(ana.locator("#new-error")).to_have_text("No account with that username.")
    ana.get_by_label("Username to write to").fill("@ben")
    ana.get_by_role("button", name="Start").click()
    expect(ana).to_have_url(re.compile(r"/c/cnv_"))
    ana.get_by_label("Message", exact=True).fill("Hola Ben, ¿tienes un minuto?")
    ana.keyboard.press("Enter")
    expect(message(ana, "Hola Ben")).to_be_visible()
    expect(ana.locator("#thread-note")).to_contain_text("hasn't accepted")

    # the request arrives live, counted on its tab, and is answered before any reply box
    requests_tab = ben.locator(".tabs [data-folder=requests]")
    expect(requests_tab.locator(".badge")).to_have_text("1")
    expect(ben).to_have_title("(1) Messages · Directo")
    requests_tab.click()
    ben.locator("#conversation-list a", has_text="Ana Costa").click()
    expect(ben.locator("#request-title")).to_have_text("Ana Costa wants to send you a message")
    expect(message(ben, "Hola Ben")).to_be_visible()
    expect(ben.locator("#composer")).to_be_hidden()
    shoot(ben, "request.png")
    ben.get_by_role("button", name="Accept").click()
    expect(ben.locator("#composer")).to_be_visible()
    expect(ana.locator("#thread-note")).to_be_hidden()  # ana learns it was accepted, live

    # typing, a reply, and the read receipt
    ben.get_by_label("Message", exact=True).press_sequentially("Cla")
    expect(ana.locator("#typing")).to_have_text("Ben Ito is typing…")
    ben.get_by_label("Message", exact=True).press_sequentially("ro, dime")
    ben.keyboard.press("Enter")
    expect(message(ana, "Claro, dime")).to_be_visible()
    expect(ana.locator("#typing")).to_have_text("")
    expect(message(ben, "Claro, dime").locator(".receipt")).to_have_text("Seen")

    # a reaction, an edit and an unsend from the message menu
    incoming = message(ana, "Claro, dime")
    incoming.get_by_role("button", name="Message actions").click()
    incoming.get_by_role("menuitem", name="React 👍").click()
    expect(message(ben, "Claro, dime").locator(".reaction")).to_have_text("👍 1")
    expect(message(ben, "Claro, dime").locator(".reaction")).to_have_attribute(
        "aria-pressed", "false")

    mine = message(ana, "Hola Ben")
    mine.get_by_role("button", name="Message actions").click()
    mine.get_by_role("menuitem", name="Edit").click()
    expect(ana.locator("#composer-context")).to_contain_text("Editing message")
    ana.get_by_label("Message", exact=True).fill("Hola Ben, ¿tienes cinco minutos?")
    ana.keyboard.press("Enter")
    expect(message(ben, "cinco minutos")).to_contain_text("edited")
    expect(message(ben, "un minuto")).to_have_count(0)

    incoming.get_by_role("button", name="Message actions").click()
    incoming.get_by_role("menuitem", name="Reply").click()
    ana.get_by_label("Message", exact=True).fill("Esto lo borro")
    ana.keyboard.press("Enter")
    expect(message(ben, "Esto lo borro").locator(".quote")).to_contain_text("Claro, dime")
    sent = message(ana, "Esto lo borro")
    sent.get_by_role("button", name="Message actions").click()
    sent.get_by_role("menuitem", name="Unsend").click()
    expect(message(ben, "Esto lo borro")).to_have_count(0)
    expect(ben.locator("#message-list .text.unsent")).to_have_text("Message unsent")
    ana.get_by_label("Message", exact=True).fill("Perfecto, te llamo a las cinco")
    ana.keyboard.press("Enter")
    expect(message(ben, "Perfecto, te llamo a las cinco")).to_be_visible()

    # pin and mute from the header; the list marks them
    ana.get_by_role("button", name="Pin").click()
    ana.get_by_role("button", name="Mute").click()
    expect(ana.get_by_role("button", name="Unmute")).to_have_attribute("aria-pressed", "true")
    row = ana.locator("#conversation-list a", has_text="Ben Ito")
    expect(row.get_by_role("img", name="Pinned")).to_be_visible()
    expect(row.get_by_role("img", name="Muted")).to_be_visible()

    # the message menu works from the keyboard: Escape closes it and gives focus back
    toggle = message(ana, "Claro, dime").get_by_role("button", name="Message actions")
    toggle.focus()
    ana.keyboard.press("Enter")
    expect(message(ana, "Claro, dime").get_by_role("menu")).to_be_visible()
    expect(message(ana, "Claro, dime").get_by_role("menuitem").first).to_be_focused()
    ana.keyboard.press("ArrowUp")  # wraps to the last item
    expect(message(ana, "Claro, dime").get_by_role("menuitem", name="Reply")).to_be_focused()
    ana.keyboard.press("Escape")
    expect(message(ana, "Claro, dime").get_by_role("menu")).to_be_hidden()
    expect(toggle).to_be_focused()
    shoot(ana, "conversation.png")
    ben.goto(f"{server.url}/")
    shoot(ben, "inbox.png")

    # what people type is shown as text and never runs (after the README's screenshots,
    # which should not show the test's payload)
    ben.locator("#conversation-list a", has_text="Ana Costa").click()
    expect(message(ben, "Hola Ben")).to_be_visible()
    ana.get_by_label("Message", exact=True).fill(XSS)
    ana.keyboard.press("Enter")
    expect(ben.locator("#message-list .text").last).to_have_text(XSS)
    assert ben.locator("#message-list img").count() == 0
    assert ben.evaluate("() => document.querySelectorAll('img').length") == 0
    expect(ben.locator("#live")).to_contain_text(f"New message from Ana Costa: {XSS}")


def test_a_dropped_connection_catches_up_once(server_factory, person, watch) -> None:
    server = server_factory()
    ana_token = account(server, "ana", "Ana Costa")
    ben_token = account(server, "ben", "Ben Ito")
    api(server, ana_token, "PUT", "/me/following/ben")
    api(server, ben_token, "PUT", "/me/following/ana")
    conversation = api(server, ana_token, "POST", "/conversations", {"with": "ben"})
    api(server, ana_token, "POST", f"/conversations/{conversation['id']}/messages",
        {"client_id": "first", "text": "before the cut"})

    ben = person()
    log_in(ben, server, "ben")
    ben.goto(f"{server.url}/c/{conversation['id']}")
    expect(message(ben, "before the cut")).to_be_visible()
    banner = ben.locator("#banner")
    expect(banner).to_be_hidden()

    # the network goes away: the banner says so, and what was sent meanwhile arrives once
    with watch.outage():
        ben.context.set_offline(True)
        expect(banner).to_have_text(re.compile("offline"))
        for number in range(3):
            api(server, ana_token, "POST", f"/conversations/{conversation['id']}/messages",
                {"client_id": f"offline-{number}", "text": f"while offline {number}"})
        ben.context.set_offline(False)
        expect(message(ben, "while offline 2")).to_be_visible()
        expect(banner).to_be_hidden()
    for number in range(3):
        expect(message(ben, f"while offline {number}")).to_have_count(1)

    # the server dies and comes back on the same data: the page reconnects by itself
    with watch.outage():
        server.kill()
        expect(banner).to_have_text("Reconnecting…")
        server.start()
        expect(banner).to_be_hidden(timeout=30_000)
    api(server, ana_token, "POST", f"/conversations/{conversation['id']}/messages",
        {"client_id": "after-restart", "text": "after the restart"})
    expect(message(ben, "after the restart")).to_have_count(1)
    expect(ben.locator("#message-list .message")).to_have_count(5)


def test_spanish_interface_and_older_messages(server_factory, person) -> None:
    server = server_factory()
    ana_token = account(server, "ana", "Ana Costa")
    diego_token = account(server, "diego", "Diego Martín")
    lucia_token = account(server, "lucia", "Lucía Fernández")
    api(server, lucia_token, "PUT", "/me/following/ana")
    conversation = api(server, ana_token, "POST", "/conversations", {"with": "lucia"})
    for number in range(60):
        api(server, ana_token, "POST", f"/conversations/{conversation['id']}/messages",
            {"client_id": f"m{number}", "text": f"mensaje {number}"})
    request = api(server, diego_token, "POST", "/conversations", {"with": "lucia"})
    api(server, diego_token, "POST", f"/conversations/{request['id']}/messages",
        {"client_id": "hola", "text": "Hola Lucía, ¿colaboramos?"})

    lucia = person(locale="es-ES", timezone="America/Mexico_City")
    lucia.goto(f"{server.url}/login")
    expect(lucia.get_by_role("heading", name="Iniciar sesión")).to_be_visible()
    log_in(lucia, server, "lucia")
    expect(lucia.locator(".tabs [data-folder=requests]")).to_contain_text("Solicitudes")
    expect(lucia.locator(".tabs [data-folder=requests] .badge")).to_have_text("1")
    lucia.locator(".tabs [data-folder=requests]").click()
    lucia.locator("#conversation-list a", has_text="Diego Martín").click()
    expect(lucia.locator("#request-title")).to_have_text(
        "Diego Martín quiere enviarte un mensaje")
    expect(lucia.get_by_role("button", name="Aceptar")).to_be_visible()
    expect(lucia.locator("#message-list .day")).to_have_text("Hoy")
    shoot(lucia, "solicitud-es.png")

    lucia.goto(f"{server.url}/c/{conversation['id']}")
    expect(lucia.locator("#message-list .message")).to_have_count(50)
    expect(lucia.get_by_label("Mensaje", exact=True)).to_have_attribute(
        "placeholder", "Escribe un mensaje…")

    # scrolling up loads the older messages, each once
    lucia.locator("#messages").evaluate("box => { box.scrollTop = 0; }")
    expect(lucia.locator("#message-list .message")).to_have_count(60)
    expect(message(lucia, "mensaje 0")).to_have_count(1)
    expect(lucia.locator("#start")).to_have_text("Inicio de la conversación")

    # the settings switch the language back to English
    lucia.goto(f"{server.url}/settings")
    lucia.get_by_label("Idioma").select_option("en")
    lucia.get_by_role("button", name="Guardar").click()
    expect(lucia.get_by_role("heading", name="Settings")).to_be_visible()
    expect(lucia.locator("html")).to_have_attribute("lang", "en")


def test_brand_member_switches_inboxes_on_a_phone(server_factory, person) -> None:
    server = server_factory()
    brand_token = account(server, "acme", "Acme", kind="brand")
    account(server, "sofia", "Sofía")
    customer_token = account(server, "carla", "Carla")
    api(server, brand_token, "PUT", "/brands/acme/members/sofia", {"role": "agent"})
    conversation = api(server, customer_token, "POST", "/conversations", {"with": "acme"})
    api(server, customer_token, "POST", f"/conversations/{conversation['id']}/messages",
        {"client_id": "q", "text": "Is my order on its way?"})

    sofia = person(viewport={"width": 390, "height": 780})
    log_in(sofia, server, "sofia")
    expect(sofia.locator("#list-empty")).to_be_visible()  # her own inbox is empty
    sofia.locator(".sides a", has_text="Acme").click()
    row = sofia.locator("#conversation-list a", has_text="Carla")
    expect(row).to_contain_text("Is my order on its way?")
    row.click()
    expect(sofia.locator(".sidebar")).to_be_hidden()  # one pane at a time on a phone
    sofia.get_by_label("Message", exact=True).fill("Yes, it arrives tomorrow.")
    sofia.keyboard.press("Enter")
    expect(message(sofia, "arrives tomorrow")).to_contain_text("Sofía · Acme")
    shoot(sofia, "phone-brand.png")

    carla = person()
    log_in(carla, server, "carla")
    carla.goto(f"{server.url}/c/{conversation['id']}")
    expect(message(carla, "arrives tomorrow").locator(".label")).to_have_text("Sofía · Acme")


def test_requests_declined_blocked_and_conversations_reported(server_factory, person) -> None:
    server = server_factory()
    ana_token = account(server, "ana", "Ana Costa")
    ids = {}
    for handle in ("spammer", "pest"):
        token = account(server, handle, handle.title())
        ids[handle] = api(server, token, "POST", "/conversations", {"with": "ana"})["id"]
        api(server, token, "POST", f"/conversations/{ids[handle]}/messages",
            {"client_id": "hi", "text": f"buy now from {handle}"})

    ana = person()
    log_in(ana, server, "ana")
    ana.goto(f"{server.url}/c/{ids['spammer']}")
    ana.get_by_role("button", name="Report").click()
    dialog = ana.get_by_role("dialog", name="Report this conversation")
    dialog.get_by_label("What is wrong?").fill("Unwanted advertising")
    dialog.get_by_role("button", name="Send report").click()
    expect(dialog).to_be_hidden()
    expect(ana.locator("#thread-note")).to_have_text("Thank you. Our team will review it.")

    ana.get_by_role("button", name="Decline").click()
    expect(ana).to_have_url(f"{server.url}/?folder=requests")
    row = ana.locator("#conversation-list a")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Pest")
    row.click()
    ana.get_by_role("button", name="Block").click()  # the confirmation is accepted
    expect(ana).to_have_url(f"{server.url}/?folder=requests")
    expect(ana.locator("#list-empty")).to_be_visible()
    blocked = api(server, ana_token, "GET", "/me/blocked")
    assert [item["handle"] for item in blocked["items"]] == ["pest"]


def test_block_and_unblock_from_the_conversation_header(server_factory, person) -> None:
    server = server_factory()
    ana_token = account(server, "ana", "Ana Costa")
    account(server, "ben", "Ben Ito")
    conversation = api(server, ana_token, "POST", "/conversations", {"with": "ben"})

    ana = person()
    log_in(ana, server, "ana")
    ana.goto(f"{server.url}/c/{conversation['id']}")
    ana.get_by_role("button", name="Block").click()
    expect(ana.locator("#thread-note")).to_have_text("You blocked this account.")
    ana.get_by_label("Message", exact=True).fill("still there?")
    ana.keyboard.press("Enter")
    expect(ana.locator("#composer-error")).to_have_text(
        "Unblock this account before messaging it.")
    expect(message(ana, "still there?")).to_have_count(0)
    ana.get_by_role("button", name="Unblock").click()
    expect(ana.locator("#thread-note")).not_to_contain_text("blocked")
    ana.get_by_role("button", name="Send").click()
    expect(message(ana, "still there?")).to_be_visible()
    assert api(server, ana_token, "GET", "/me/blocked")["items"] == []
