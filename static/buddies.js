// The buddy list (docs/protocol.md, "Buddies"): the accounts the user follows, online or not,
// away or not, as the server tells, live; whom the user blocks; and who is away among the
// people of the room (the welcome's `away`, then `away` and `back` events).
import { colourClass } from "./text.js";

const byName = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });
const $ = (id) => document.getElementById(id);

export class Buddies {
  // request(owner, event), answered(kind, name): requests.js. open(name): an IM window.
  // onChange(): who is away or a buddy changed (the online list and the IM window show it).
  constructor({ request, answered, open, onChange }) {
    this.send = (event) => request(this, event);
    this.answer = answered;
    this.open = open;
    this.onChange = onChange;
    this.me = "";
    this.buddies = new Map(); // name -> {name, online, away, message}
    this.blocked = new Set();
    this.away = new Map(); // name -> away message, of those in the room (and the user)
    this.panel = $("buddies-panel");
    this.list = $("buddies");
    this.blockedPanel = $("blocked-panel");
    this.blockedList = $("blocked");
    this.input = $("buddy-name");
    this.error = $("buddy-error");
    $("buddy-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = this.input.value.trim();
      if (!name) return;
      if (this.send({ type: "buddy_add", name })) {
        this.input.value = "";
        this.error.textContent = "";
      }
    });
  }

  welcomed(event) {
    this.away = new Map(Object.entries(event.away ?? {}));
    if (event.guest || !Array.isArray(event.buddies)) {
      this.stop();
      return;
    }
    this.me = event.name;
    this.panel.hidden = false;
    this.buddies = new Map(event.buddies.map((buddy) => [buddy.name, buddy]));
    this.blocked = new Set(event.blocked ?? []);
    this.render();
  }

  stop() {
    this.me = "";
    this.panel.hidden = true;
    this.buddies.clear();
    this.blocked.clear();
    this.render();
  }

  // Returns true for the events it took (`away` and `back` go to others too).
  handle(event) {
    switch (event.type) {
      case "buddy":
        this.answer("buddy", event.name);
        this.buddies.set(event.name, event);
        break;
      case "buddy_removed":
        this.answer("buddy_removed", event.name);
        this.buddies.delete(event.name);
        break;
      case "blocked":
      case "unblocked":
        this.answer(event.type, event.name);
        if (event.type === "blocked") this.blocked.add(event.name);
        else this.blocked.delete(event.name);
        break;
      case "away":
      case "back": {
        const message = event.type === "away" ? event.message : null;
        if (message === null) this.away.delete(event.name);
        else this.away.set(event.name, message);
        const buddy = this.buddies.get(event.name);
        if (buddy) this.buddies.set(event.name, { ...buddy, away: message !== null, message: message ?? undefined });
        this.render();
        this.onChange();
        return false;
      }
      default:
        return false;
    }
    this.render();
    this.onChange();
    return true;
  }

  // Someone left the room: what it said of being away is no longer the room's to show.
  left(name) {
    if (name !== this.me && this.away.delete(name)) this.onChange();
  }

  refused(_request, error) {
    this.error.textContent = error.detail;
  }

  isBlocked(name) {
    return this.blocked.has(name);
  }

  // "away: lunch", "online", "offline" or "" (not a buddy, not known to be away).
  statusOf(name) {
    const buddy = this.buddies.get(name);
    const away = this.away.get(name) ?? (buddy?.away ? buddy.message : undefined);
    if (away !== undefined) return `away: ${away}`;
    if (buddy) return buddy.online ? "online" : "offline";
    return "";
  }

  // The online list: who is away shows it.
  decorate(item, name) {
    const message = this.away.get(name);
    if (message === undefined) return;
    item.classList.add("away");
    const mark = document.createElement("span");
    mark.className = "away-mark";
    mark.textContent = "away";
    mark.title = message;
    item.append(" ", mark);
  }

  render() {
    const buddies = [...this.buddies.values()].sort(
      (a, b) => Number(b.online) - Number(a.online) || byName.compare(a.name, b.name),
    );
    this.list.replaceChildren(...buddies.map((buddy) => this.item(buddy)));
    const blocked = [...this.blocked].sort(byName.compare).map((name) => {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = `name ${colourClass(name)}`;
      label.textContent = name;
      const unblock = document.createElement("button");
      unblock.type = "button";
      unblock.textContent = "Unblock";
      unblock.setAttribute("aria-label", `Unblock ${name}`);
      unblock.addEventListener("click", () => this.send({ type: "unblock", name }));
      item.append(label, " ", unblock);
      return item;
    });
    this.blockedList.replaceChildren(...blocked);
    this.blockedPanel.hidden = blocked.length === 0;
  }

  item(buddy) {
    const item = document.createElement("li");
    item.className = buddy.online ? (buddy.away ? "buddy away" : "buddy online") : "buddy offline";
    const open = document.createElement("button");
    open.type = "button";
    open.className = "buddy-open";
    const name = document.createElement("span");
    name.className = `name ${colourClass(buddy.name)}`;
    name.textContent = buddy.name;
    open.append(name);
    open.setAttribute("aria-label", `Write to ${buddy.name}`);
    open.addEventListener("click", () => this.open(buddy.name));
    const status = document.createElement("span");
    status.className = "buddy-status";
    status.textContent = buddy.online ? (buddy.away ? `away: ${buddy.message ?? ""}` : "online") : "offline";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "buddy-remove";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${buddy.name} from your buddies`);
    remove.addEventListener("click", () => this.send({ type: "buddy_remove", name: buddy.name }));
    item.append(open, " ", status, " ", remove);
    return item;
  }
}
