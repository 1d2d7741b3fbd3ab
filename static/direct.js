// Instant messages (docs/protocol.md, "Direct messages"): the conversations beside the rooms,
// each with its unread count, and the IM window of one of them. Each message is shown once
// however often it arrives (a welcome's resume, a page of history, live): by id, within the
// server's epoch. Which messages were read is remembered in this browser, per account.
import { frameBytes } from "./composer.js";
import { recall, remember } from "./prefs.js";
import { colourClass, textWithLinks, timeElement } from "./text.js";

const PAGE = 100; // the most the server gives at once
const NEAR_BOTTOM = 48;

const byName = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });
const $ = (id) => document.getElementById(id);

class Conversation {
  constructor(name) {
    this.name = name;
    this.messages = new Map(); // id -> dm event
    this.last = 0; // the highest id the server has told of
    this.ts = 0; // and its time: the list is by the latest
    this.complete = false; // the first message is here
  }

  add(message) {
    if (this.messages.has(message.id)) return false;
    this.messages.set(message.id, message);
    if (message.id >= this.last) {
      this.last = message.id;
      this.ts = message.ts;
    }
    return true;
  }

  get ids() {
    return [...this.messages.keys()].sort((a, b) => a - b);
  }

  get newest() {
    return this.messages.size ? Math.max(...this.messages.keys()) : 0;
  }
}

export class Direct {
  // request(owner, event) -> whether it went out (requests.js keeps it until it is answered);
  // answered(kind, name): it was; statusOf(name) -> text about that person, or "";
  // blocked(name) -> whether the user blocks them; onIncoming(message): a new one for the user.
  constructor({ request, answered, statusOf, blocked, onIncoming, maxBytes }) {
    this.send = (event) => request(this, event);
    this.answer = answered;
    this.statusOf = statusOf;
    this.blocked = blocked;
    this.onIncoming = onIncoming;
    this.maxBytes = maxBytes;
    this.me = "";
    this.epoch = null;
    this.conversations = new Map(); // name -> Conversation
    this.seen = {}; // name -> the last id the user saw (remembered per account)
    this.open = null; // the name in the IM window
    this.asks = []; // dm_history requests not answered yet, in order: {kind, name, after}
    this.guests = new Set();
    this.panel = $("messages-panel");
    this.list = $("conversations");
    this.total = $("unread-total");
    this.window = $("im");
    this.log = $("im-log");
    this.scroller = $("im-scroller");
    this.older = $("im-older");
    this.input = $("im-text");
    this.error = $("im-error");
    $("im-close").addEventListener("click", () => this.close());
    $("im-block").addEventListener("click", () => {
      if (this.open) this.send({ type: this.blocked(this.open) ? "unblock" : "block", name: this.open });
    });
    this.older.addEventListener("click", () => this.loadOlder());
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("im-composer").requestSubmit();
      } else if (event.key === "Escape") {
        this.close();
      }
    });
    $("im-composer").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.open) this.markSeen(this.open);
    });
  }

  // A welcome: a signed-in connection lists its conversations with the last id of each;
  // what this page has not seen of them is asked for, and nothing twice.
  welcomed(event) {
    this.asks = [];
    this.guests = new Set(event.guests ?? []);
    if (event.guest || !Array.isArray(event.conversations)) {
      this.stop();
      return;
    }
    if (event.name !== this.me || event.epoch !== this.epoch) {
      // Another account, or ids of another epoch: start afresh.
      this.conversations.clear();
      this.close();
    }
    this.me = event.name;
    this.epoch = event.epoch;
    this.recallSeen(event.conversations);
    this.panel.hidden = false;
    for (const { with: name, last, ts } of event.conversations) {
      const conversation = this.conversation(name);
      const known = Math.max(conversation.newest, this.seen[name] ?? 0);
      if (last > conversation.last) {
        conversation.last = last;
        conversation.ts = ts;
      }
      if (last > known) this.ask(name, { after: known || undefined, before: last + 1, limit: PAGE, kind: "missed" });
    }
    if (this.open) {
      const conversation = this.conversation(this.open);
      if (!conversation.messages.size) this.ask(this.open, { limit: PAGE, kind: "older" });
    }
    this.render();
  }

  stop() {
    this.panel.hidden = true;
    this.close();
    this.me = "";
    this.conversations.clear();
    this.list.replaceChildren();
  }

  // The online list tells who is a guest: no IM for them.
  joined(event) {
    if (event.guest) this.guests.add(event.name);
  }

  canWrite(name) {
    return this.me !== "" && name !== this.me && !this.guests.has(name);
  }

  conversation(name) {
    let conversation = this.conversations.get(name);
    if (!conversation) {
      conversation = new Conversation(name);
      this.conversations.set(name, conversation);
    }
    return conversation;
  }

  ask(name, { after, before, limit, kind }) {
    const event = { type: "dm_history", with: name, limit };
    if (after) event.after = after;
    if (before) event.before = before;
    if (this.send(event)) this.asks.push({ kind, name, after });
  }

  // Returns true for the events it took.
  handle(event) {
    if (event.type === "dm") {
      this.received(event);
      return true;
    }
    if (event.type === "dm_history") {
      this.paged(event);
      return true;
    }
    if ((event.type === "blocked" || event.type === "unblocked") && event.name === this.open) this.renderWindow();
    return false;
  }

  received(message) {
    const mine = message.from === this.me;
    const partner = mine ? message.to : message.from;
    const conversation = this.conversation(partner);
    if (!conversation.add(message)) return;
    if (mine && !message.auto) this.answer("dm", partner, message.text);
    if (!mine && !(partner === this.open && !document.hidden)) this.onIncoming(message);
    if (partner === this.open) this.renderWindow(mine);
    else this.render();
  }

  paged(event) {
    this.answer("dm_history", event.with);
    const index = this.asks.findIndex((ask) => ask.name === event.with);
    const request = index >= 0 ? this.asks.splice(index, 1)[0] : { kind: "older" };
    const conversation = this.conversation(event.with);
    for (const message of event.messages) conversation.add(message);
    if (request.kind === "older" && !event.more) conversation.complete = true;
    if (request.kind === "missed" && event.more && event.messages.length) {
      // More was missed than one page: on back, until what was seen before.
      this.ask(event.with, { after: request.after, before: event.messages[0].id, limit: PAGE, kind: "missed" });
    }
    if (request.kind === "missed" && !request.after && !event.more) conversation.complete = true;
    if (event.with === this.open) this.renderWindow();
    this.render();
  }

  // The server refused `request`, one of ours (requests.js): say why where the user looks.
  refused(request, event) {
    if (request.type === "dm") {
      if (!this.input.value) this.input.value = request.text;
      if (this.open !== request.to) this.show(request.to);
      this.say(event.detail);
    } else if (request.type === "dm_history") {
      const index = this.asks.findIndex((ask) => ask.name === request.with);
      if (index >= 0) this.asks.splice(index, 1);
      if (request.with === this.open) this.say(event.detail);
    } else if (this.open) {
      this.say(event.detail);
    }
  }

  // The IM window

  show(name) {
    const changed = this.open !== name;
    this.open = name;
    this.window.hidden = false;
    $("im-title").textContent = name;
    $("im-title").className = `im-title name ${colourClass(name)}`;
    const conversation = this.conversation(name);
    if (changed) {
      this.log.replaceChildren();
      this.say("");
      if (!conversation.messages.size && !conversation.complete) this.ask(name, { limit: PAGE, kind: "older" });
    }
    this.renderWindow(true);
    this.render();
    this.input.focus();
  }

  close() {
    this.open = null;
    this.window.hidden = true;
    this.render();
  }

  loadOlder() {
    const conversation = this.open && this.conversation(this.open);
    if (!conversation || conversation.complete) return;
    const oldest = conversation.ids[0];
    this.ask(this.open, { before: oldest, limit: PAGE, kind: "older" });
  }

  submit() {
    const text = this.input.value;
    if (!this.open || !text.trim()) return;
    const event = { type: "dm", to: this.open, text };
    const over = frameBytes(text) + JSON.stringify(this.open).length + 12 - this.maxBytes;
    if (over > 0) {
      this.say(`Too long by ${over} bytes: shorten it to send it.`);
      return;
    }
    if (!this.send(event)) {
      this.say("Not connected: your message is kept here until you are back.");
      return;
    }
    this.input.value = "";
    this.say("");
  }

  say(text) {
    this.error.textContent = text;
  }

  markSeen(name) {
    const conversation = this.conversations.get(name);
    if (!conversation || (this.seen[name] ?? 0) >= conversation.newest) return;
    this.seen[name] = conversation.newest;
    remember(this.seenKey, JSON.stringify({ epoch: this.epoch, seen: this.seen }));
    this.render();
  }

  get seenKey() {
    return `dm-seen.${this.me}`;
  }

  // What this browser saw of the account's conversations. Never asked before (a new browser):
  // everything there is counts as seen, rather than a flood of old messages as new.
  recallSeen(conversations) {
    let stored = null;
    try {
      stored = JSON.parse(recall(`dm-seen.${this.me}`, "null"));
    } catch {
      stored = null;
    }
    if (stored && stored.epoch === this.epoch && typeof stored.seen === "object") {
      this.seen = stored.seen;
      return;
    }
    this.seen = {};
    if (!stored) for (const { with: name, last } of conversations) this.seen[name] = last;
    remember(`dm-seen.${this.me}`, JSON.stringify({ epoch: this.epoch, seen: this.seen }));
  }

  unread(conversation) {
    const seen = this.seen[conversation.name] ?? 0;
    let count = 0;
    for (const message of conversation.messages.values()) {
      if (message.from !== this.me && message.id > seen) count += 1;
    }
    return count;
  }

  render() {
    const conversations = [...this.conversations.values()]
      .filter((conversation) => conversation.last > 0 || conversation.name === this.open)
      .sort((a, b) => b.ts - a.ts || byName.compare(a.name, b.name));
    let total = 0;
    const items = conversations.map((conversation) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "conversation-open";
      const name = document.createElement("span");
      name.className = `name ${colourClass(conversation.name)}`;
      name.textContent = conversation.name;
      button.append(name);
      const unread = conversation.name === this.open && !document.hidden ? 0 : this.unread(conversation);
      total += unread;
      if (unread) {
        const badge = document.createElement("span");
        badge.className = "unread";
        badge.textContent = String(unread);
        const unit = document.createElement("span");
        unit.className = "visually-hidden";
        unit.textContent = " unread";
        badge.append(unit);
        button.append(" ", badge);
      }
      if (conversation.name === this.open) button.setAttribute("aria-current", "true");
      button.addEventListener("click", () => this.show(conversation.name));
      item.append(button);
      return item;
    });
    this.list.replaceChildren(...items);
    this.total.hidden = total === 0;
    this.total.textContent = String(total);
  }

  renderWindow(follow = false) {
    const name = this.open;
    if (!name) return;
    const conversation = this.conversation(name);
    const atBottom = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight <= NEAR_BOTTOM;
    const items = conversation.ids.map((id) => this.item(conversation.messages.get(id)));
    this.log.replaceChildren(...items);
    this.older.hidden = conversation.complete || !conversation.messages.size;
    $("im-status").textContent = this.statusOf(name);
    $("im-block").textContent = this.blocked(name) ? "Unblock" : "Block";
    if (follow || atBottom) this.scroller.scrollTop = this.scroller.scrollHeight;
    if (!document.hidden) this.markSeen(name);
  }

  item(message) {
    const item = document.createElement("li");
    item.className = message.from === this.me ? "message own" : "message";
    if (message.auto) item.classList.add("auto");
    item.dataset.id = String(message.id);
    const meta = document.createElement("div");
    meta.className = "meta";
    const name = document.createElement("span");
    name.className = `name ${colourClass(message.from)}`;
    name.textContent = message.from;
    meta.append(name);
    if (message.auto) {
      const auto = document.createElement("span");
      auto.className = "auto-reply";
      auto.textContent = "auto reply";
      meta.append(" ", auto);
    }
    meta.append(" ", timeElement(message.ts));
    const text = document.createElement("div");
    text.className = "text";
    text.append(textWithLinks(message.text));
    item.append(meta, text);
    return item;
  }

  // The online list: a button to write to each account there but oneself.
  decorate(item, name) {
    if (!this.canWrite(name)) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "im-open";
    button.textContent = "IM";
    button.setAttribute("aria-label", `Write to ${name}`);
    button.addEventListener("click", () => this.show(name));
    item.append(" ", button);
  }
}
