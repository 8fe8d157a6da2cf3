// Directo's live parts: the conversation list, the thread and the event stream.
// Data from the server is only ever put in the page as text (textContent, createTextNode).
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("directo-config").textContent);
  const $ = (id) => document.getElementById(id);

  // -- text, dates and the DOM ---------------------------------------------------------------

  function t(key, values = {}) {
    let text = config.strings[key] || key;
    for (const [name, value] of Object.entries(values)) text = text.replaceAll(`{${name}}`, value);
    return text;
  }

  const locale = navigator.languages.find((tag) => tag.toLowerCase().startsWith(config.lang))
    || config.lang;
  const formats = {
    time: new Intl.DateTimeFormat(locale, { hour: "numeric", minute: "2-digit" }),
    day: new Intl.DateTimeFormat(locale, { weekday: "long", day: "numeric", month: "long" }),
    date: new Intl.DateTimeFormat(locale, { day: "numeric", month: "short" }),
    full: new Intl.DateTimeFormat(locale, { dateStyle: "full", timeStyle: "short" }),
  };

  function dayKey(date) {
    return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;
  }

  function dayLabel(date) {
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (dayKey(date) === dayKey(today)) return t("thread.today");
    if (dayKey(date) === dayKey(yesterday)) return t("thread.yesterday");
    return formats.day.format(date);
  }

  function timeNode(iso, format) {
    const date = new Date(iso);
    return el("time", { datetime: iso, title: formats.full.format(date) },
      formats[format].format(date));
  }

  // el("p", {class: "x", "aria-label": "y"}, "text", childNode): children become text nodes.
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === false || value === null || value === undefined) continue;
      node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function announce(text) {
    $("live").textContent = text;
  }

  // -- the JSON API --------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = config.csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(`/api/v1${path}`, {
        method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, "network", t("banner.offline"));
    }
    if (response.status === 401) {
      window.location.assign("/login");
      throw new ApiError(401, "unauthorized", "");
    }
    if (!response.ok) {
      let error = {};
      try { error = (await response.json()).error || {}; } catch { /* not JSON */ }
      throw new ApiError(response.status, error.code, error.message);
    }
    return response.status === 204 ? null : response.json();
  }

  function errorText(error) {
    if (error.code === "network") return error.message;
    return config.strings[`error.${error.code}`] || t("error.generic");
  }

  function randomId() {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
  }

  const baseTitle = document.title;
  const asQuery = config.as ? `&as=${encodeURIComponent(config.as)}` : "";

  // -- the connection banner and the event stream --------------------------------------------

  function banner(key) {
    const node = $("banner");
    node.hidden = !key;
    node.textContent = key ? t(key) : "";
    node.dataset.state = key || "online";
  }

  const stream = {
    socket: null,
    cursor: null,
    attempts: 0,
    retryTimer: null,
    lastFrameAt: Date.now(),
    started: false,

    connect() {
      clearTimeout(this.retryTimer);
      const url = new URL("/api/v1/stream", window.location.href);
      url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
      if (this.cursor) url.searchParams.set("after", this.cursor);
      const socket = new WebSocket(url);
      this.socket = socket;
      socket.addEventListener("message", (event) => {
        this.lastFrameAt = Date.now();
        this.receive(JSON.parse(event.data));
      });
      socket.addEventListener("close", () => {
        if (this.socket !== socket) return;
        this.socket = null;
        this.retry();
      });
    },

    receive(frame) {
      if (frame.type === "ready") {
        this.cursor = frame.cursor;
        this.attempts = 0;
        banner(null);
        if (!this.started) {
          this.started = true;
          loadEverything();
        }
      } else if (frame.type === "resync_required") {
        this.cursor = frame.cursor;
        banner("banner.resync");
        if (thread) thread.messages.clear();
        loadEverything();
      } else if (frame.type !== "pong") {
        if (frame.cursor) this.cursor = frame.cursor;
        handleEvent(frame);
      }
    },

    retry() {
      if (!navigator.onLine) {
        banner("banner.offline");
        return;
      }
      banner("banner.reconnecting");
      const delay = Math.min(10000, 300 * 2 ** this.attempts) * (0.8 + Math.random() * 0.4);
      this.attempts += 1;
      this.retryTimer = setTimeout(() => this.connect(), delay);
    },

    drop() {
      if (this.socket) this.socket.close();
    },

    send(frame) {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify(frame));
      }
    },

    // a connection that went silent (a sleeping laptop, a dead proxy) is replaced
    heartbeat() {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastFrameAt > 45000) this.socket.close();
      else this.send({ type: "ping" });
    },
  };

  window.addEventListener("offline", () => {
    banner("banner.offline");
    stream.drop();
  });
  window.addEventListener("online", () => {
    stream.attempts = 0;
    if (!stream.socket) stream.connect();
  });
  setInterval(() => stream.heartbeat(), 20000);

  function handleEvent(event) {
    const data = event.data || {};
    const here = thread && data.conversation_id === thread.id;
    if (event.type === "typing") {
      if (here) thread.showTyping(data.author || data.by);
      return;
    }
    if (event.type.startsWith("message.")) {
      if (here && data.message) thread.receive(data.message, event.type === "message.created");
    } else if (event.type.startsWith("reaction.")) {
      if (here) thread.reacted(data.message_id, data.emoji, data.by, event.type === "reaction.added");
    } else if (event.type === "conversation.read") {
      if (here && data.by && data.by.id !== thread.sideId) thread.peerRead(data.message_id);
    } else if (event.type.startsWith("conversation.") && here) {
      thread.reload();
    }
    list.schedule();
  }

  // -- the conversation list ------------------------------------------------------------------

  const list = {
    timer: null,

    schedule() {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.refresh(), 150);
    },

    async refresh() {
      if (!navigator.onLine) return; // the reconnect replays what changed meanwhile
      try {
        const [page, unread] = await Promise.all([
          api("GET", `/conversations?folder=${config.folder}&limit=50${asQuery}`),
          api("GET", "/unread"),
        ]);
        this.render(page.items);
        this.counts(unread.accounts);
      } catch (error) {
        if (error.status !== 401) banner(navigator.onLine ? "banner.reconnecting" : "banner.offline");
      }
    },

    render(items) {
      const node = $("conversation-list");
      node.replaceChildren(...items.map((item) => this.row(item)));
      node.setAttribute("aria-busy", "false");
      $("list-empty").hidden = items.length > 0;
    },

    snippet(item) {
      const message = item.last_message;
      if (!message) return "";
      const text = message.text === null ? t("thread.unsent") : message.text.split("\n")[0];
      const byMe = (message.author || message.sender).id === config.me.id;
      if (byMe) return t("list.you", { text });
      return message.author ? `${message.author.display_name}: ${text}` : text;
    },

    row(item) {
      const current = item.id === config.conversation_id;
      const marks = el("span", { class: "marks" },
        item.pinned ? el("span", { class: "mark pinned", title: t("list.pinned"), "aria-label": t("list.pinned"), role: "img" }) : null,
        item.muted ? el("span", { class: "mark muted", title: t("list.muted"), "aria-label": t("list.muted"), role: "img" }) : null,
        item.unread_count > 0
          ? el("span", { class: "badge", "aria-label": t("list.unread", { n: item.unread_count }) },
            String(item.unread_count))
          : null);
      const when = item.last_activity_at ? timeNode(item.last_activity_at,
        dayKey(new Date(item.last_activity_at)) === dayKey(new Date()) ? "time" : "date") : null;
      const link = el("a", {
        href: `/c/${encodeURIComponent(item.id)}`, class: "conversation",
        "aria-current": current ? "page" : false, "data-unread": item.unread_count > 0 ? "true" : false,
      },
      el("span", { class: "avatar", "aria-hidden": "true" }, initial(item.with.display_name)),
      el("span", { class: "summary" },
        el("span", { class: "line" }, el("span", { class: "name" }, item.with.display_name), when),
        el("span", { class: "line" }, el("span", { class: "snippet" }, this.snippet(item)), marks)));
      return el("li", { "data-conversation": item.id }, link);
    },

    counts(accounts) {
      const mine = accounts[config.as || config.me.handle];
      const unread = Object.values(accounts).reduce((sum, c) => sum + c.inbox + c.requests, 0);
      document.title = `${unread ? `(${unread}) ` : ""}${baseTitle}`;
      for (const tab of document.querySelectorAll(".tabs [data-folder]")) {
        const count = mine ? mine[tab.dataset.folder] : 0;
        const badge = tab.querySelector(".badge");
        badge.hidden = !count || tab.dataset.folder === "archived";
        badge.textContent = count ? String(count) : "";
      }
      for (const side of document.querySelectorAll(".sides [data-handle]")) {
        const counts = accounts[side.dataset.handle];
        const total = counts ? counts.inbox + counts.requests : 0;
        const badge = side.querySelector(".badge");
        badge.hidden = !total;
        badge.textContent = total ? String(total) : "";
      }
    },
  };

  function initial(name) {
    return Array.from(name.trim())[0]?.toUpperCase() || "?";
  }

  $("new-conversation").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("new-handle");
    const handle = input.value.trim().replace(/^@/, "");
    $("new-error").textContent = "";
    input.removeAttribute("aria-invalid");
    if (!handle) return;
    try {
      const body = config.as ? { with: handle, as: config.as } : { with: handle };
      const conversation = await api("POST", "/conversations", body);
      window.location.assign(`/c/${encodeURIComponent(conversation.id)}`);
    } catch (error) {
      $("new-error").textContent = errorText(error);
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  });

  // -- the thread -----------------------------------------------------------------------------

  const REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];

  class Thread {
    constructor(id) {
      this.id = id;
      this.conversation = null;
      this.messages = new Map();
      this.hasOlder = false;
      this.loadingOlder = false;
      this.replyTo = null;
      this.editing = null;
      this.clientId = null;
      this.typingTimer = null;
      this.lastTypingSent = 0;
      this.lastMarked = null;
      this.blocked = false;
      this.box = $("messages");
      this.bind();
    }

    get sideId() {
      return this.conversation ? this.conversation.as.id : null;
    }

    async load() {
      this.conversation = await api("GET", `/conversations/${this.id}`);
      if (!config.as) { // blocks are personal: a brand's inbox does not offer them
        const blocked = await api("GET", "/me/blocked");
        this.blocked = blocked.items.some((item) => item.id === this.conversation.with.id);
      }
      const page = await api("GET", `/conversations/${this.id}/messages?limit=50`);
      for (const message of page.items) this.messages.set(message.id, message);
      this.hasOlder = page.has_more;
      this.renderFrame();
      this.render({ stick: true });
      this.markRead();
    }

    async reload() {
      this.conversation = await api("GET", `/conversations/${this.id}`);
      this.renderFrame();
      this.render({});
    }

    async loadOlder() {
      const oldest = this.ordered()[0];
      if (!this.hasOlder || this.loadingOlder || !oldest) return;
      this.loadingOlder = true;
      try {
        const page = await api("GET",
          `/conversations/${this.id}/messages?limit=50&before=${encodeURIComponent(oldest.id)}`);
        for (const message of page.items) this.messages.set(message.id, message);
        this.hasOlder = page.has_more;
        this.render({ keepPosition: true });
      } finally {
        this.loadingOlder = false;
      }
    }

    ordered() {
      return Array.from(this.messages.values()).sort((a, b) =>
        a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : (a.id < b.id ? -1 : 1));
    }

    receive(message, created) {
      const isNew = !this.messages.has(message.id);
      this.messages.set(message.id, message);
      if (!this.conversation) return; // still loading: load() renders it
      this.render({});
      if (created && isNew && message.sender.id !== this.sideId) {
        this.hideTyping();
        announce(t("thread.new_from", { name: message.sender_label, text: message.text || "" }));
        this.markRead();
      }
    }

    reacted(messageId, emoji, by, added) {
      const message = this.messages.get(messageId);
      if (!message || !by) return;
      const others = message.reactions.filter((r) => r.emoji !== emoji);
      const current = message.reactions.find((r) => r.emoji === emoji);
      const handles = (current ? current.by : []).filter((handle) => handle !== by.handle);
      if (added) handles.push(by.handle);
      message.reactions = handles.length ? [...others, { emoji, by: handles }] : others;
      if (this.conversation) this.render({});
    }

    peerRead(messageId) {
      if (!this.conversation) return;
      this.conversation.peer_last_read_message_id = messageId;
      this.render({});
    }

    async markRead() {
      const last = this.ordered().at(-1);
      const state = this.conversation && this.conversation.state;
      if (!last || state === "request" || document.visibilityState !== "visible") return;
      if (last.sender.id === this.sideId || this.lastMarked === last.id) return;
      this.lastMarked = last.id;
      try {
        await api("POST", `/conversations/${this.id}/read`, { message_id: last.id });
      } catch {
        this.lastMarked = null;
      this.blocked = false;
      }
    }

    // -- header, request panel, composer ------------------------------------------------------

    renderFrame() {
      const c = this.conversation;
      const isRequest = c.state === "request";
      $("request-panel").hidden = !isRequest;
      $("request-title").textContent = t("request.title", { name: c.with.display_name });
      $("composer").hidden = isRequest;
      const note = $("thread-note");
      let noteText = "";
      if (this.blocked) noteText = t("thread.blocked");
      else if (c.state === "declined") noteText = t("thread.declined");
      else if (!isRequest && c.awaiting_acceptance) noteText = t("thread.waiting", { name: c.with.display_name });
      note.hidden = !noteText;
      note.textContent = noteText;
      const action = (key, handler, extra = {}) => {
        const button = el("button", { type: "button", "data-action": key, ...extra }, t(`actions.${key}`));
        button.addEventListener("click", handler);
        return button;
      };
      const flag = (name, on, off) => action(c[name] ? off : on,
        () => this.setFlag(name, !c[name]),
        { "aria-pressed": c[name] ? "true" : "false", "data-flag": name });
      const report = action("report", () => this.openReport());
      if (isRequest) { // the request panel answers it; only reporting is added here
        $("thread-actions").replaceChildren(report);
        return;
      }
      $("thread-actions").replaceChildren(...[
        flag("pinned", "pin", "unpin"),
        flag("muted", "mute", "unmute"),
        c.state === "accepted" ? flag("archived", "archive", "unarchive") : null,
        config.as ? null : this.blocked
          ? action("unblock", () => this.setBlocked(false))
          : action("block", () => this.setBlocked(true), { class: "danger" }),
        report,
      ].filter(Boolean));
    }

    async setFlag(name, value) {
      try {
        this.conversation = await api("PATCH", `/conversations/${this.id}`, { [name]: value });
        this.renderFrame();
        $("thread-actions").querySelector(`[data-flag="${name}"]`)?.focus();
        list.schedule();
      } catch (error) {
        this.showError(error);
      }
    }

    async setBlocked(blocked) {
      const who = this.conversation.with;
      if (blocked && !window.confirm(t("actions.confirm_block", { name: who.display_name }))) return false;
      try {
        await api(blocked ? "PUT" : "DELETE", `/me/blocked/${encodeURIComponent(who.handle)}`);
      } catch (error) {
        this.showError(error);
        return false;
      }
      this.blocked = blocked;
      this.renderFrame();
      $("thread-actions").querySelector("[data-action=block], [data-action=unblock]")?.focus();
      return true;
    }

    async answerRequest(answer) {
      try {
        if (answer === "block") { // a blocked request leaves the Requests folder
          if (await this.setBlocked(true)) window.location.assign(`/?folder=requests${asQuery}`);
          return;
        }
        this.conversation = await api("POST", `/conversations/${this.id}/${answer}`);
        if (answer === "decline") {
          window.location.assign(`/?folder=requests${asQuery}`);
          return;
        }
        this.renderFrame();
        this.render({});
        this.markRead();
        $("composer-text").focus();
        list.schedule();
      } catch (error) {
        this.showError(error);
      }
    }

    openReport() {
      $("report-error").textContent = "";
      $("report-dialog").showModal();
    }

    async sendReport() {
      const reason = $("report-reason").value.trim();
      if (!reason) return;
      try {
        await api("POST", `/conversations/${this.id}/report`, { reason });
        $("report-dialog").close();
        $("report-reason").value = "";
        $("thread-note").hidden = false;
        $("thread-note").textContent = t("report.done");
      } catch (error) {
        $("report-error").textContent = errorText(error);
      }
    }

    showError(error) {
      $("composer-error").textContent = errorText(error);
    }

    startReply(message) {
      this.editing = null;
      this.replyTo = message;
      this.showContext(t("composer.replying", { name: message.sender_label }));
    }

    startEdit(message) {
      this.replyTo = null;
      this.editing = message;
      $("composer-text").value = message.text;
      this.showContext(t("composer.editing"));
    }

    showContext(text) {
      $("composer-context").hidden = false;
      $("composer-context-text").textContent = text;
      $("composer-text").focus();
    }

    clearContext() {
      if (this.editing) $("composer-text").value = "";
      this.replyTo = null;
      this.editing = null;
      $("composer-context").hidden = true;
    }

    async submit() {
      const input = $("composer-text");
      const text = input.value;
      if (!text.trim()) return;
      $("composer-error").textContent = "";
      try {
        let message;
        if (this.editing) {
          message = await api("PATCH", `/messages/${this.editing.id}`, { text });
        } else {
          this.clientId = this.clientId || randomId(); // a retry after a failure is deduplicated
          const body = { client_id: this.clientId, text };
          if (this.replyTo) body.reply_to = this.replyTo.id;
          message = await api("POST", `/conversations/${this.id}/messages`, body);
          this.clientId = null;
        }
        input.value = "";
        this.clearContext();
        this.messages.set(message.id, message);
        this.render({ stick: true });
        list.schedule();
      } catch (error) {
        this.showError(error);
      }
    }

    typed() {
      this.clientId = null;
      if (Date.now() - this.lastTypingSent > 3000) {
        this.lastTypingSent = Date.now();
        stream.send({ type: "typing", conversation_id: this.id });
      }
    }

    showTyping(who) {
      $("typing").textContent = t("thread.typing", { name: who.display_name });
      clearTimeout(this.typingTimer);
      this.typingTimer = setTimeout(() => this.hideTyping(), 6000);
    }

    hideTyping() {
      clearTimeout(this.typingTimer);
      $("typing").textContent = "";
    }

    bind() {
      $("composer").addEventListener("submit", (event) => {
        event.preventDefault();
        this.submit();
      });
      $("composer-text").addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.submit();
        } else if (event.key === "Escape" && !$("composer-context").hidden) {
          this.clearContext();
        }
      });
      $("composer-text").addEventListener("input", () => this.typed());
      $("composer-cancel").addEventListener("click", () => this.clearContext());
      for (const button of document.querySelectorAll("[data-request]")) {
        button.addEventListener("click", () => this.answerRequest(button.dataset.request));
      }
      $("older").addEventListener("click", () => this.loadOlder());
      new IntersectionObserver((entries) => {
        if (entries.some((entry) => entry.isIntersecting)) this.loadOlder();
      }, { root: this.box }).observe($("older"));
      $("report-form").addEventListener("submit", (event) => {
        event.preventDefault();
        this.sendReport();
      });
      $("report-cancel").addEventListener("click", () => $("report-dialog").close());
      document.addEventListener("visibilitychange", () => this.markRead());
      document.addEventListener("click", (event) => {
        if (!event.target.closest(".message-menu, .menu-button")) closeMenus();
      });
    }

    // -- messages -----------------------------------------------------------------------------

    render({ stick = false, keepPosition = false }) {
      const box = this.box;
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
      const fromBottom = box.scrollHeight - box.scrollTop;
      const focusKey = document.activeElement && document.activeElement.dataset.focusKey;
      const ordered = this.ordered();
      const seenIndex = ordered.findIndex((m) => m.id === this.conversation.peer_last_read_message_id);
      let lastMine = -1;
      ordered.forEach((m, index) => { if (m.sender.id === this.sideId) lastMine = index; });
      const nodes = [];
      let previousDay = null;
      ordered.forEach((message, index) => {
        const date = new Date(message.created_at);
        if (dayKey(date) !== previousDay) {
          previousDay = dayKey(date);
          nodes.push(el("li", { class: "day", role: "separator" }, dayLabel(date)));
        }
        const receipt = index === lastMine ? t(seenIndex >= lastMine ? "thread.seen" : "thread.sent") : null;
        nodes.push(this.messageNode(message, receipt));
      });
      $("message-list").replaceChildren(...nodes);
      $("older").hidden = !this.hasOlder;
      $("start").hidden = this.hasOlder || ordered.length === 0;
      if (focusKey) document.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
      if (keepPosition) box.scrollTop = box.scrollHeight - fromBottom;
      else if (stick || atBottom) box.scrollTop = box.scrollHeight;
    }

    mayChange(message) {
      if (message.sender.id !== this.sideId || message.deleted_at) return false;
      return (message.author ? message.author.id : message.sender.id) === config.me.id;
    }

    messageNode(message, receipt) {
      const mine = message.sender.id === this.sideId;
      const unsent = message.text === null;
      const bubble = el("div", { class: "bubble" },
        message.author ? el("p", { class: "label" }, message.sender_label) : null,
        message.reply_to ? el("blockquote", { class: "quote" },
          el("span", { class: "quote-who" }, message.reply_to.sender.display_name),
          el("span", {}, message.reply_to.text === null ? t("thread.unsent") : message.reply_to.text)) : null,
        el("p", { class: unsent ? "text unsent" : "text" }, unsent ? t("thread.unsent") : message.text),
        el("span", { class: "meta" }, timeNode(message.created_at, "time"),
          message.edited_at && !unsent ? ` · ${t("thread.edited")}` : null));
      const node = el("li", { class: mine ? "message mine" : "message", id: `m-${message.id}`, "data-message": message.id },
        el("span", { class: "visually-hidden" }, `${message.sender_label}: `), bubble);
      if (!unsent && this.conversation.state !== "request") node.append(...this.menuNodes(message));
      if (message.reactions.length) node.append(this.reactionsNode(message));
      if (receipt) node.append(el("p", { class: "receipt", "data-receipt": receipt === t("thread.seen") ? "seen" : "sent" }, receipt));
      return node;
    }

    reactionsNode(message) {
      const me = this.conversation.as.handle;
      return el("div", { class: "reactions" }, ...message.reactions.map((reaction) => {
        const mineToo = reaction.by.includes(me);
        const chip = el("button", {
          type: "button", class: "reaction", "aria-pressed": mineToo ? "true" : "false",
          "aria-label": t("reaction.label", { emoji: reaction.emoji, who: reaction.by.join(", ") }),
          "data-focus-key": `reaction-${message.id}-${reaction.emoji}`,
        }, `${reaction.emoji} ${reaction.by.length}`);
        chip.addEventListener("click", () => this.react(message, reaction.emoji, !mineToo));
        return chip;
      }));
    }

    menuNodes(message) {
      const menuId = `menu-${message.id}`;
      const toggle = el("button", {
        type: "button", class: "menu-button", "aria-haspopup": "menu", "aria-expanded": "false",
        "aria-controls": menuId, "aria-label": t("menu.label"), "data-focus-key": `menu-${message.id}`,
      }, "⋯");
      const item = (label, handler, attributes = {}) => {
        const button = el("button", { type: "button", role: "menuitem", ...attributes }, label);
        button.addEventListener("click", () => { closeMenus(); handler(); });
        return button;
      };
      const menu = el("div", { class: "message-menu", role: "menu", id: menuId, hidden: true },
        el("div", { class: "emoji-row", role: "group", "aria-label": t("menu.react") },
          ...REACTIONS.map((emoji) => item(emoji, () => this.react(message, emoji, true),
            { "aria-label": `${t("menu.react")} ${emoji}`, "data-emoji": emoji }))),
        item(t("menu.reply"), () => this.startReply(message), { "data-menu": "reply" }),
        this.mayChange(message) && this.editable(message)
          ? item(t("menu.edit"), () => this.startEdit(message), { "data-menu": "edit" }) : null,
        this.mayChange(message)
          ? item(t("menu.unsend"), () => this.unsend(message), { "data-menu": "unsend" }) : null);
      toggle.addEventListener("click", () => {
        const open = menu.hidden;
        closeMenus();
        if (open) {
          menu.hidden = false;
          toggle.setAttribute("aria-expanded", "true");
          menu.querySelector("[role=menuitem]").focus();
        }
      });
      menu.addEventListener("keydown", (event) => {
        const items = Array.from(menu.querySelectorAll("[role=menuitem]"));
        const step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 }[event.key];
        if (event.key === "Escape") {
          closeMenus();
          toggle.focus();
        } else if (step) {
          event.preventDefault();
          const next = (items.indexOf(document.activeElement) + step + items.length) % items.length;
          items[next].focus();
        }
      });
      return [toggle, menu];
    }

    editable(message) {
      return Date.now() - new Date(message.created_at).getTime() < config.edit_window_seconds * 1000;
    }

    async react(message, emoji, add) {
      try {
        await api(add ? "PUT" : "DELETE", `/messages/${message.id}/reactions/${encodeURIComponent(emoji)}`);
      } catch (error) {
        this.showError(error);
      }
    }

    async unsend(message) {
      if (!window.confirm(t("menu.confirm_unsend"))) return;
      try {
        await api("DELETE", `/messages/${message.id}`);
      } catch (error) {
        this.showError(error);
      }
    }
  }

  function closeMenus() {
    for (const menu of document.querySelectorAll(".message-menu:not([hidden])")) {
      menu.hidden = true;
      menu.previousElementSibling.setAttribute("aria-expanded", "false");
    }
  }

  // -- start ---------------------------------------------------------------------------------

  const thread = config.conversation_id ? new Thread(config.conversation_id) : null;

  function loadEverything() {
    list.refresh();
    if (thread) thread.load().catch((error) => thread.showError(error));
  }

  stream.connect();
})();
