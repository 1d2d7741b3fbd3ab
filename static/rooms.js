// The active rooms and how many are in each, from GET /api/rooms (docs/protocol.md): asked
// while connected, every so often and soon after someone comes or goes.
import { scriptTag } from "./scripts.js";

const EVERY = 15_000;
const SOON = 1_000; // joins and leaves come in bursts: one request for the lot

export function roomPath(room) {
  // /r/NAME cannot carry a "/" (the router splits on it); the query string can carry anything.
  return room.includes("/") ? `/?room=${encodeURIComponent(room)}` : `/r/${encodeURIComponent(room)}`;
}

export class Rooms {
  // allowed(): whether the server is there to ask (no requests while disconnected).
  // here(): how many are online in the current room, which the page knows best.
  // pick(room): the user chose another room from the list.
  constructor({ list, allowed, here, pick }) {
    this.list = list;
    this.allowed = allowed;
    this.here = here;
    this.pick = pick;
    this.current = "";
    this.rooms = [];
    this.timer = null;
    this.soon = null;
  }

  start(current) {
    if (current !== this.current) this.rooms = [];
    this.current = current;
    this.render();
    this.refresh();
  }

  stop() {
    clearTimeout(this.timer);
    clearTimeout(this.soon);
    this.timer = this.soon = null;
  }

  refreshSoon() {
    if (this.soon === null) {
      this.soon = setTimeout(() => {
        this.soon = null;
        this.refresh();
      }, SOON);
    }
  }

  async refresh() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), EVERY);
    if (!this.allowed()) return;
    try {
      const response = await fetch("/api/rooms", { cache: "no-store" });
      if (!response.ok) return;
      this.rooms = (await response.json()).rooms;
    } catch {
      return; // the next round will tell
    }
    this.render();
  }

  render() {
    const rooms = this.rooms.filter(({ room }) => room !== this.current);
    rooms.push({ room: this.current, online: this.here() });
    rooms.sort((a, b) => b.online - a.online || (a.room < b.room ? -1 : a.room > b.room ? 1 : 0));
    const items = rooms.map(({ room, online }) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = roomPath(room);
      link.textContent = room;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = String(online);
      const unit = document.createElement("span");
      unit.className = "visually-hidden";
      unit.textContent = " online";
      count.append(unit);
      if (room === this.current) {
        link.setAttribute("aria-current", "page");
      } else {
        link.addEventListener("click", (event) => {
          if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
          event.preventDefault();
          this.pick(room);
        });
      }
      item.append(link);
      const tag = scriptTag(room);
      if (tag) item.append(" ", tag);
      item.append(" ", count);
      return item;
    });
    this.list.replaceChildren(...items);
  }
}
