// What the messenger's parts asked the server and it has not answered yet. An `error` event
// does not say what it answers (docs/protocol.md): it goes to the part that asked last, if
// that came after the room's composer last sent (an error answers the latest request: the
// rate limit refuses the latest frames, and every other refusal comes right away).

const FORGET_AFTER = 30_000; // ms: an answer later than this is not coming

// The event that answers each kind of request (besides an error), by the name it concerns.
const ANSWERS = {
  dm: "dm",
  dm_history: "dm_history",
  buddy_add: "buddy",
  buddy_remove: "buddy_removed",
  block: "blocked",
  unblock: "unblocked",
};

function sameName(a, b) {
  return String(a).normalize("NFKC").toLowerCase() === String(b).normalize("NFKC").toLowerCase();
}

export class Requests {
  // send(event) -> whether it went out; roomSentAt() -> when the room's composer last sent.
  constructor({ send, roomSentAt }) {
    this.send = send;
    this.roomSentAt = roomSentAt;
    this.pending = []; // {owner, event, at}, oldest first
  }

  // Send `event` for `owner`, which hears of its refusal (`owner.refused(event, error)`).
  request(owner, event) {
    if (!this.send(event)) return false;
    if (event.type in ANSWERS) this.pending.push({ owner, event, at: performance.now() });
    return true;
  }

  // An answer came: of a request of `kind` about `name` (and, for a message, `text`). The
  // server answers with the name as registered, which the user may have typed otherwise.
  answered(kind, name, text) {
    const index = this.pending.findIndex(
      ({ event }) =>
        ANSWERS[event.type] === kind &&
        sameName(event.to ?? event.with ?? event.name, name) &&
        (text === undefined || event.text === text),
    );
    if (index >= 0) this.pending.splice(index, 1);
  }

  // An `error`: true if it answers one of these requests, whose owner was told.
  refused(error) {
    const now = performance.now();
    this.pending = this.pending.filter(({ at }) => now - at < FORGET_AFTER);
    const latest = this.pending.at(-1);
    if (!latest || latest.at < this.roomSentAt()) return false;
    this.pending.pop();
    latest.owner.refused(latest.event, error);
    return true;
  }

  clear() {
    this.pending = [];
  }
}
