// Who is online in the room: the buddy list beside the conversation, in alphabetical order,
// guests marked as such.
import { guestTag } from "./guests.js";
import { scriptTag } from "./scripts.js";
import { colourClass } from "./text.js";

const byName = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

export class Presence {
  // decorate(item, name): what other parts of the page add to a name's entry (menus, an IM button, "away").
  constructor({ list, count, decorate = () => {} }) {
    this.list = list;
    this.count = count;
    this.decorate = decorate;
    this.names = new Set();
    this.guests = new Set(); // those of `names` who are guests
    this.me = "";
  }

  reset(names, me, guests = []) {
    this.names = new Set(names);
    this.guests = new Set(guests);
    this.me = me;
    this.render();
  }

  // Each returns false when there was nothing to change.
  join(name, guest = false) {
    if (this.names.has(name)) return false;
    this.names.add(name);
    if (guest) this.guests.add(name);
    this.render();
    return true;
  }

  leave(name) {
    if (!this.names.delete(name)) return false;
    this.guests.delete(name);
    this.render();
    return true;
  }

  render() {
    const items = [...this.names].sort(byName.compare).map((name) => {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = `name ${colourClass(name)}`;
      label.textContent = name;
      item.append(label);
      const tag = scriptTag(name);
      if (tag) item.append(" ", tag);
      if (this.guests.has(name)) item.append(" ", guestTag());
      if (name === this.me) {
        item.classList.add("me");
        item.append(" (you)");
      }
      this.decorate(item, name);
      return item;
    });
    this.list.replaceChildren(...items);
    this.count.textContent = String(this.names.size);
  }
}
