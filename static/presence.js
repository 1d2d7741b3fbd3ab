// Who is online in the room: the buddy list beside the conversation, in alphabetical order.
import { scriptTag } from "./scripts.js";
import { colourClass } from "./text.js";

const byName = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

export class Presence {
  // decorate(item, name): what other parts add to a name's entry (an IM button, "away").
  constructor({ list, count, decorate = () => {} }) {
    this.list = list;
    this.count = count;
    this.decorate = decorate;
    this.names = new Set();
    this.me = "";
  }

  reset(names, me) {
    this.names = new Set(names);
    this.me = me;
    this.render();
  }

  // Each returns false when there was nothing to change.
  join(name) {
    if (this.names.has(name)) return false;
    this.names.add(name);
    this.render();
    return true;
  }

  leave(name) {
    if (!this.names.delete(name)) return false;
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
