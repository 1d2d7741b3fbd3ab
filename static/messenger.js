// What a signed-in account has besides the rooms: instant messages (direct.js), buddies
// (buddies.js) and its away message, set by hand or after a while without a key press or a
// click (the server's CHAT_AUTO_AWAY, on the page's <body>), and back on the next one unless
// set by hand. app.js hands it the events it does not know, and asks it to decorate names.
import { Buddies } from "./buddies.js";
import { Direct } from "./direct.js";
import { recall, remember } from "./prefs.js";
import { Requests } from "./requests.js";

const $ = (id) => document.getElementById(id);
const ACTIVITY = ["keydown", "pointerdown", "wheel", "touchstart"];
const SHARE_EVERY = 5_000; // ms: how often a tab tells the others of this browser it is in use

export class Messenger {
  // send(event) -> whether it went out; roomSentAt() -> when the room's composer last sent;
  // onChange(): names to decorate again; onIncoming(message): an instant message for the user.
  constructor({ send, roomSentAt, maxBytes, onChange, onIncoming }) {
    this.requests = new Requests({ send, roomSentAt });
    this.sendNow = send;
    const request = (owner, event) => this.requests.request(owner, event);
    const answered = (kind, name, text) => this.requests.answered(kind, name, text);
    this.onChange = onChange;
    this.buddies = new Buddies({
      request,
      answered,
      open: (name) => this.direct.show(name),
      onChange: () => {
        this.direct.renderWindow();
        onChange();
      },
    });
    this.direct = new Direct({
      request,
      answered,
      statusOf: (name) => this.buddies.statusOf(name),
      blocked: (name) => this.buddies.isBlocked(name),
      onIncoming,
      maxBytes,
    });
    this.me = "";
    this.signedIn = false;
    this.myAway = null; // the user's away message, as the server last said
    this.byHand = null; // the away message the user set, to set again after a reconnection
    this.idle = Number(document.body.dataset.autoAway) * 1000 || 0;
    this.lastActivity = Date.now();
    this.shared = 0;
    this.timer = null;
    this.control = $("away-control");
    this.form = $("away-form");
    $("away-open").addEventListener("click", () => this.toggleForm());
    $("away-back").addEventListener("click", () => {
      this.byHand = null;
      this.autoAway(false);
      this.sendNow({ type: "back" });
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const message = $("away-message").value.trim();
      this.byHand = message;
      this.autoAway(false);
      this.sendNow(message ? { type: "away", message } : { type: "away" });
      this.toggleForm(false);
    });
    for (const kind of ACTIVITY) document.addEventListener(kind, () => this.active(), { passive: true });
    // On a phone the lists start folded, as app.js folds the others.
    if (matchMedia("(max-width: 40rem)").matches) {
      $("messages-panel").open = false;
      $("buddies-panel").open = false;
    }
    window.addEventListener("storage", (event) => {
      if (event.key === "chatroom.activity") this.active(Number(event.newValue) || Date.now(), false);
    });
  }

  welcomed(event) {
    this.requests.clear();
    this.signedIn = !event.guest && Array.isArray(event.buddies);
    this.me = event.name;
    this.buddies.welcomed(event);
    this.direct.welcomed(event);
    this.control.hidden = !this.signedIn;
    this.myAway = event.away?.[event.name] ?? null;
    // Not away on the server (its last connection went meanwhile): the page's own mark goes too.
    if (this.myAway === null) this.autoAway(false);
    if (this.signedIn && this.myAway === null && this.byHand !== null) {
      // Set by hand before the connection dropped: the server forgot it with the account offline.
      this.sendNow(this.byHand ? { type: "away", message: this.byHand } : { type: "away" });
    }
    this.renderAway();
    this.watchIdle();
  }

  stop() {
    this.signedIn = false;
    this.byHand = null;
    this.myAway = null;
    this.requests.clear();
    this.buddies.stop();
    this.direct.stop();
    this.control.hidden = true;
    clearTimeout(this.timer);
    this.timer = null;
  }

  // Returns true for the events it took, which app.js need not look at.
  handle(event) {
    if ((event.type === "away" || event.type === "back") && event.name === this.me) {
      this.myAway = event.type === "away" ? event.message : null;
      if (this.myAway === null) this.autoAway(false);
      this.renderAway();
    }
    return this.direct.handle(event) || this.buddies.handle(event);
  }

  // A join or a leave in the room.
  presence(event) {
    if (event.type === "join") this.direct.joined(event);
    else this.buddies.left(event.name);
  }

  refused(error) {
    return this.requests.refused(error);
  }

  decorate(item, name) {
    this.buddies.decorate(item, name);
    this.direct.decorate(item, name);
  }

  toggleForm(open = this.form.hidden) {
    this.form.hidden = !open;
    $("away-open").setAttribute("aria-expanded", String(open));
    if (open) $("away-message").focus();
  }

  renderAway() {
    const away = this.myAway !== null;
    $("away-open").hidden = away;
    $("away-back").hidden = !away;
    $("away-status").textContent = away ? `Away: ${this.myAway}` : "";
    if (away) this.toggleForm(false);
  }

  // Idle: a key press or a click in any tab of this browser counts (they share the time).
  active(at = Date.now(), mine = true) {
    this.lastActivity = Math.max(this.lastActivity, at);
    if (mine && at - this.shared > SHARE_EVERY) {
      this.shared = at;
      remember("activity", String(at));
    }
    if (this.myAway !== null && this.isAutoAway()) {
      this.autoAway(false);
      this.sendNow({ type: "back" });
    }
  }

  watchIdle() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.signedIn || !this.idle) return;
    const left = this.lastActivity + this.idle - Date.now();
    if (left > 0) {
      this.timer = setTimeout(() => this.watchIdle(), Math.min(left, 15_000));
      return;
    }
    if (this.myAway === null && this.byHand === null && !this.isAutoAway()) {
      this.autoAway(true);
      this.sendNow({ type: "away" });
    }
    this.timer = setTimeout(() => this.watchIdle(), 15_000);
  }

  // Whether the account was set away by the page (in any tab of this browser), not by hand.
  isAutoAway() {
    return recall("away-auto") === "1";
  }

  autoAway(on) {
    remember("away-auto", on ? "1" : "");
  }
}
