// Older history, asked of the server one page at a time (docs/protocol.md, "history"):
// to fill the hole a reconnect can leave, and when the reader reaches the top. One request
// is in flight at a time. A server that does not page answers `unknown_type` (or
// `bad_event`); it is not asked again on that connection, and the page works with what the
// welcomes give.

const PAGE = 100; // the most the server gives at once

export class Paging {
  // send(event) -> whether it went out; onChange() when `canLoadOlder` may have changed.
  constructor({ timeline, send, onChange }) {
    this.timeline = timeline;
    this.send = send;
    this.onChange = onChange;
    this.pending = null; // {before, until} of the request in flight
    this.following = null; // the request to make once the answer is shown
    this.supported = true;
  }

  get loading() {
    return this.pending !== null;
  }

  get canLoadOlder() {
    const segment = this.timeline.current;
    return this.supported && segment !== null && !segment.complete && this.timeline.oldestId !== null;
  }

  // A new connection, welcomed: nothing is in flight on it, and it may well page. The
  // timeline holds the welcome's history by now. `since` is what the connection asked to
  // resume from (null: nothing); `fresh` says the welcome began another epoch.
  welcomed(welcome, since, fresh) {
    this.pending = null;
    this.following = null;
    this.supported = true;
    const history = welcome.history;
    if (since === null) {
      // A newcomer's welcome holds the latest messages: none at all means none before.
      if (history.length === 0) this.timeline.current.complete = true;
    } else if (fresh) {
      // `since` counted in the previous epoch, so the server may have left out messages of
      // this one: ask for the page before the oldest shown, or before `since` + 1.
      this.request(history[0]?.id ?? since + 1, null);
    } else if (welcome.gap && history.length) {
      // More was missed than the server replays: walk back until the hole is closed.
      this.request(history[0].id, since);
    }
    this.onChange();
  }

  loadOlder() {
    if (!this.pending && this.canLoadOlder) this.request(this.timeline.oldestId, null);
  }

  // `until`: keep asking until a page reaches this id (null: one page is enough).
  request(before, until) {
    if (this.pending || !this.supported || before < 1) return;
    if (this.send({ type: "history", before, limit: PAGE })) this.pending = { before, until };
    this.onChange();
  }

  // The answer to the request in flight: returns its messages for the timeline. Once they
  // are shown, `next()` asks for the following page if a hole is still open.
  answered(event) {
    const request = this.pending;
    this.pending = null;
    if (!request) return [];
    const messages = event.messages;
    if (!event.more) this.timeline.current.complete = true;
    const oldest = messages[0]?.id;
    if (request.until !== null && event.more && oldest !== undefined && oldest > request.until + 1) {
      this.following = { before: oldest, until: request.until };
    }
    return messages;
  }

  next() {
    const following = this.following;
    this.following = null;
    if (following) this.request(following.before, following.until);
    this.onChange();
  }

  // An `unknown_type` error: returns true if it was the answer to a history request.
  refused() {
    if (!this.pending) return false;
    this.pending = null;
    this.supported = false;
    this.onChange();
    return true;
  }
}
