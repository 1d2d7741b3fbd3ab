// The conversation as shown. Messages are kept in id order within each epoch (the lifetime
// of the server's history, docs/protocol.md) and shown once each, however often they arrive:
// a reconnect's welcome, a page of older history and live events may overlap. Notices
// (joins, leaves) stay where they happened. The view follows the newest message unless the
// reader scrolled up; then a button offers the way down. A guest's messages say so.
import { guestTag } from "./guests.js";
import { scriptTag } from "./scripts.js";
import { colourClass, textWithLinks, timeElement } from "./text.js";

const NEAR_BOTTOM = 48; // pixels: "at the bottom", give or take a fraction of a line

// The messages of one epoch on screen, by id.
class Segment {
  constructor(epoch) {
    this.epoch = epoch;
    this.items = new Map(); // id -> <li>
    this.messages = new Map(); // id -> the message as it is now
    this.same = new Map(); // id -> what makes it that message in any epoch (`sameness`)
    this.ids = []; // ascending
    this.complete = false; // the room's first message is shown
  }

  // Index of the first id greater than `id`.
  after(id) {
    let low = 0;
    let high = this.ids.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.ids[middle] <= id) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

// A message is the same in another epoch if all of it is: a history that lost only its end
// (a server's Redis back from an older copy) has the rest again under a new epoch.
function sameness(message) {
  return JSON.stringify([message.id, message.ts, message.name, message.text]);
}

export class Timeline {
  // decorate(item, message): what the parts of room life add to a message's item (life.js).
  constructor({ scroller, list, jump, input, decorate = () => {} }) {
    this.scroller = scroller;
    this.list = list;
    this.jump = jump;
    this.decorate = decorate;
    this.segment = null; // the epoch shown now; earlier ones are only on screen
    this.earlier = new Map(); // their messages: sameness -> <li>
    this.me = "";
    this.appended = false;
    this.mine = false;
    scroller.addEventListener("scroll", () => {
      if (this.atBottom()) jump.hidden = true;
    });
    jump.addEventListener("click", () => {
      this.scrollToBottom();
      input.focus();
    });
  }

  get current() {
    return this.segment;
  }

  get epoch() {
    return this.current?.epoch ?? null;
  }

  // Newest message id of the current epoch: where a reconnect resumes (`since`).
  get lastId() {
    return this.current?.ids.at(-1) ?? null;
  }

  get oldestId() {
    return this.current?.ids[0] ?? null;
  }

  // Start showing `epoch`; returns false if it is the one already shown. In another epoch
  // ids start again, so the ids known so far are forgotten (their messages stay on screen,
  // but one that comes again in the new epoch moves there: shown once).
  enter(epoch) {
    if (this.epoch === epoch) return false;
    const segment = this.current;
    for (const [id, item] of segment?.items ?? []) this.earlier.set(segment.same.get(id), item);
    if (this.list.childElementCount) {
      this.addNotice("The server's history started again: the messages above are no longer on the server.", "divider");
    }
    this.segment = new Segment(epoch);
    return true;
  }

  clear() {
    this.list.replaceChildren();
    this.segment = null;
    this.earlier.clear();
    this.jump.hidden = true;
  }

  // Make changes in one go: the scroll position is read once before and set once after.
  update(change) {
    const follow = this.atBottom();
    const anchor = follow ? null : this.firstVisible();
    this.appended = false;
    this.mine = false;
    change();
    if (follow || this.mine) {
      this.scrollToBottom();
    } else {
      if (anchor) this.scroller.scrollTop += anchor.item.getBoundingClientRect().top - anchor.top;
      if (this.appended) this.jump.hidden = false;
    }
  }

  // Returns true if the message was not shown yet.
  addMessage(message) {
    const segment = this.current;
    if (!segment || segment.items.has(message.id)) return false;
    const same = sameness(message);
    const shown = this.earlier.get(same);
    shown?.remove();
    this.earlier.delete(same);
    const item = this.messageItem(message);
    const index = segment.after(message.id);
    const next = segment.items.get(segment.ids[index]);
    if (next) {
      this.list.insertBefore(item, next);
    } else {
      this.list.append(item);
      this.appended = true;
      this.mine ||= message.name === this.me;
    }
    segment.ids.splice(index, 0, message.id);
    segment.items.set(message.id, item);
    segment.messages.set(message.id, message);
    segment.same.set(message.id, same);
    return shown === undefined;
  }

  // The message shown with this id, as it is now (null if it is not shown).
  messageOf(id) {
    return this.current?.messages.get(id) ?? null;
  }

  itemOf(id) {
    return this.current?.items.get(id) ?? null;
  }

  // A message shown changed (edited, deleted, reacted to): its item is drawn again in place.
  replace(message) {
    const segment = this.current;
    const old = segment?.items.get(message.id);
    if (!old) return;
    const item = this.messageItem(message);
    old.replaceWith(item);
    segment.items.set(message.id, item);
    segment.messages.set(message.id, message);
    segment.same.set(message.id, sameness(message));
  }

  addNotice(text, kind, ts = Date.now()) {
    const item = document.createElement("li");
    item.className = `notice ${kind}`;
    const words = document.createElement("span");
    words.textContent = text;
    item.append(words, " ", timeElement(ts));
    this.list.append(item);
    this.appended = true;
  }

  messageItem(message) {
    const item = document.createElement("li");
    item.className = message.name === this.me ? "message own" : "message";
    item.dataset.id = String(message.id);
    const meta = document.createElement("div");
    meta.className = "meta";
    const name = document.createElement("span");
    name.className = `name ${colourClass(message.name)}`;
    name.textContent = message.name;
    meta.append(name);
    const tag = scriptTag(message.name);
    if (tag) meta.append(tag);
    if (message.guest) meta.append(guestTag());
    meta.append(" ", timeElement(message.ts));
    const text = document.createElement("div");
    text.className = "text";
    text.append(textWithLinks(message.text));
    item.append(meta, text);
    this.decorate(item, message);
    return item;
  }

  atBottom() {
    const { scrollHeight, scrollTop, clientHeight } = this.scroller;
    return scrollHeight - scrollTop - clientHeight <= NEAR_BOTTOM;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.jump.hidden = true;
  }

  // The first item at least partly in view, and where it is: restoring that position after
  // inserting above it keeps the reader's place (what `overflow-anchor` does, everywhere).
  firstVisible() {
    const top = this.scroller.getBoundingClientRect().top;
    for (const item of this.list.children) {
      const box = item.getBoundingClientRect();
      if (box.bottom > top) return { item, top: box.top };
    }
    return null;
  }
}
