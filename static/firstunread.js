// "New since you left": coming back to a room (a reload, a reconnect, another day), a line
// above the first message that arrived since the user last read there, and a button to
// jump up to it when it is out of view. Where the user read is remembered per room in this
// browser (with the epoch its ids count in), and for an account on the server too, which
// follows it across devices (docs/protocol.md, "read"): the page reports it every few
// seconds while it shows the newest messages.
import { recall, remember } from "./prefs.js";

const REPORT_EVERY = 3000; // ms between two reports to the server

export class FirstUnread {
  // send(event) -> whether it went out; signedIn() -> whether the server keeps it.
  constructor({ timeline, scroller, button, send, signedIn }) {
    this.timeline = timeline;
    this.scroller = scroller;
    this.button = button;
    this.send = send;
    this.signedIn = signedIn;
    this.room = "";
    this.read = 0; // the newest id read, in the epoch shown
    this.lineAt = null; // the id of the message the line is drawn above
    this.reported = 0; // the id the server was told last
    this.reportedAt = 0;
    this.pending = null; // the timer of a report that waits its turn
    // Scrolled down to the newest: read too, not only when something arrives.
    scroller.addEventListener("scroll", () => this.seen());
    button.addEventListener("click", () => {
      this.lineItem()?.scrollIntoView({ block: "start" });
      this.button.hidden = true;
    });
    document.addEventListener("visibilitychange", () => this.seen());
  }

  // A welcome, its history shown: the line goes above the first message after where the
  // user read (the server's word for an account, this browser's otherwise), not theirs.
  welcomed(welcome, me) {
    this.room = welcome.room;
    const kept = this.kept();
    let read = kept && kept.epoch === welcome.epoch ? kept.id : null;
    if (typeof welcome.read === "number") read = Math.max(read ?? 0, welcome.read);
    this.read = read ?? 0;
    this.reported = welcome.read ?? 0;
    this.lineItem()?.querySelector(".unread-line")?.remove();
    this.lineAt = null;
    if (read !== null) {
      const segment = this.timeline.current;
      const first = segment?.ids.find((id) => id > read && segment.messages.get(id)?.name !== me);
      if (first !== undefined) {
        this.lineAt = first;
        this.decorate(this.timeline.itemOf(first), { id: first });
      }
    }
    this.place();
  }

  // Drawn into the message's own item, so that it moves with it (and an item drawn again keeps it).
  decorate(item, message) {
    if (message.id !== this.lineAt || !item) return;
    const line = document.createElement("div");
    line.className = "unread-line";
    line.setAttribute("role", "separator");
    line.textContent = "New since you left";
    item.prepend(line);
  }

  lineItem() {
    return this.lineAt === null ? null : this.timeline.itemOf(this.lineAt);
  }

  // The button shows while the line is above the view: all of it (the line's own box, not its
  // item's, whose top is the view's own once jumped to, give or take a fraction of a pixel).
  place() {
    const line = this.lineItem()?.querySelector(".unread-line");
    this.button.hidden = !line || line.getBoundingClientRect().bottom > this.scroller.getBoundingClientRect().top;
  }

  // After every change: what the user sees at the bottom of a visible page is read.
  seen() {
    this.place();
    const last = this.timeline.lastId;
    if (document.hidden || last === null || last <= this.read || !this.timeline.atBottom()) return;
    this.read = last;
    remember(`read.${this.room}`, JSON.stringify({ epoch: this.timeline.epoch, id: last }));
    if (this.signedIn()) this.report();
  }

  report() {
    if (this.pending !== null) return;
    const wait = this.reportedAt + REPORT_EVERY - Date.now();
    if (wait > 0) {
      this.pending = setTimeout(() => {
        this.pending = null;
        this.report();
      }, wait);
      return;
    }
    if (this.read > this.reported && this.send({ type: "read", id: this.read })) {
      this.reported = this.read;
      this.reportedAt = Date.now();
    }
  }

  kept() {
    try {
      const kept = JSON.parse(recall(`read.${this.room}`, "null"));
      return kept && typeof kept.id === "number" ? kept : null;
    } catch {
      return null;
    }
  }
}
