// Who is typing (docs/protocol.md, "typing"): the room is told while the user types, at
// most every few seconds, and "ann is typing…" shows under the conversation for a few
// seconds after each time someone else is, until they stop, send or leave.

const SEND_EVERY = 3000; // ms: what the server forwards at most anyway
const SHOWN = 6000; // ms a typist shows after the last word that they were typing
const NAMED = 3; // typists named; beyond, "several people"

export class Typing {
  // send(event) -> whether it went out; line: where it shows.
  constructor({ input, line, send }) {
    this.line = line;
    this.send = send;
    this.typists = new Map(); // name -> the timer that forgets them
    this.sentAt = 0; // when the latest start went out (0: none showing for the others)
    input.addEventListener("input", () => this.typed(input.value));
  }

  typed(value) {
    const now = Date.now();
    if (value.trim()) {
      if (now - this.sentAt >= SEND_EVERY && this.send({ type: "typing" })) this.sentAt = now;
    } else if (this.sentAt && now - this.sentAt < SHOWN) {
      this.send({ type: "typing", stop: true }); // emptied without sending
      this.sentAt = 0;
    }
  }

  // The user sent a message: that tells the others all they need.
  sent() {
    this.sentAt = 0;
  }

  heard(event) {
    if (event.stop) {
      this.gone(event.name);
      return;
    }
    clearTimeout(this.typists.get(event.name));
    this.typists.set(
      event.name,
      setTimeout(() => this.gone(event.name), SHOWN),
    );
    this.render();
  }

  // They sent their message, stopped, or left.
  gone(name) {
    if (!this.typists.has(name)) return;
    clearTimeout(this.typists.get(name));
    this.typists.delete(name);
    this.render();
  }

  reset() {
    for (const timer of this.typists.values()) clearTimeout(timer);
    this.typists.clear();
    this.sentAt = 0;
    this.render();
  }

  render() {
    const names = [...this.typists.keys()];
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length > 1 && names.length <= NAMED) {
      text = `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`;
    } else if (names.length > NAMED) text = "Several people are typing…";
    this.line.textContent = text;
  }
}
