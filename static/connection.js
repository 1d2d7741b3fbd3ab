// The socket to /ws: splits frames into events, and reconnects with backoff and jitter.
// It knows the protocol only as far as reconnecting needs: the welcome means "in", and
// some close codes mean that trying again would end the same way.

export const Close = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  INVALID_NAME: 4400,
  NOT_SIGNED_IN: 4401,
  FORBIDDEN: 4403,
  NAME_TAKEN: 4409,
  REPLACED: 4410,
});

// After these, connecting again unchanged would be refused again: the user acts first.
const FINAL = new Set([
  Close.UNSUPPORTED_DATA,
  Close.POLICY_VIOLATION,
  Close.MESSAGE_TOO_BIG,
  Close.INVALID_NAME,
  Close.NOT_SIGNED_IN,
  Close.FORBIDDEN, // kicked, banned, or not let in: the banner says why (moderation.js)
  Close.NAME_TAKEN,
  Close.REPLACED,
]);

// A name refused (4409) because an account has it says so in its reason. It is nobody's
// old connection: waiting would not free it.
export function registeredName(reason) {
  return /\bregistered\b/i.test(reason);
}

const FIRST_DELAY = 1000;
const MAX_DELAY = 30_000;

// A name refused soon after losing a connection that was in may still be this page's own:
// held by the old connection, which a server process lets go a moment after a clean close,
// or up to 40 s after a blip when the token of the welcome cannot take it over (see
// docs/protocol.md, "Resuming"). Or someone else took it meanwhile: the page cannot tell,
// so for a minute it retries often, for the name may be free at any moment.
const GHOST_GRACE = 60_000;
const GHOST_MAX_DELAY = 5_000;

// Exponential backoff with "equal jitter": at least half the step, so a reconnect never
// hammers, and the rest random, so a room the server dropped does not return all at once.
export function retryDelay(attempt) {
  const step = Math.min(MAX_DELAY, FIRST_DELAY * 2 ** attempt);
  return step / 2 + Math.random() * (step / 2);
}

export class Connection {
  // url(): where to connect, asked afresh each time (it carries `since`).
  // protocols(): the subprotocols to offer, asked afresh too (they carry the token).
  // onEvents(events): the events of one frame, in order.
  // onState(state): {phase: "connecting" | "online" | "waiting" | "stopped", ...}.
  constructor({ url, protocols, onEvents, onState }) {
    this.url = url;
    this.protocols = protocols;
    this.onEvents = onEvents;
    this.onState = onState;
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.state = { phase: "stopped", code: Close.NORMAL, reason: "" };
    // The close that started this round of retries: attempts refused while the server is
    // away say nothing new, and "the server is restarting" stays truer than "lost".
    this.cause = null;
    // When the last connection that got in was lost; null while in, or before ever getting in.
    this.lostAt = null;
    window.addEventListener("online", () => {
      if (this.state.phase === "waiting") this.connect();
    });
  }

  get online() {
    return this.state.phase === "online";
  }

  start() {
    this.attempt = 0;
    this.lostAt = null;
    this.connect();
  }

  // Ends the connection for good (sign off, another room): no reconnect follows.
  stop() {
    this.detach();
    this.setState({ phase: "stopped", code: Close.NORMAL, reason: "" });
  }

  retryNow() {
    if (this.state.phase === "waiting" || this.state.phase === "stopped") this.connect();
  }

  send(event) {
    if (!this.online) return false;
    this.socket.send(JSON.stringify(event));
    return true;
  }

  connect() {
    this.detach();
    const socket = new WebSocket(this.url(), this.protocols());
    this.socket = socket;
    this.setState({ phase: "connecting" });
    socket.addEventListener("message", (frame) => {
      if (socket !== this.socket) return;
      const events = [];
      for (const line of String(frame.data).split("\n")) {
        try {
          events.push(JSON.parse(line));
        } catch {
          // Not an event: the protocol allows nothing else, so there is nothing to show.
        }
      }
      if (this.state.phase === "connecting" && events[0]?.type === "welcome") {
        this.attempt = 0;
        this.cause = null;
        this.lostAt = null;
        this.setState({ phase: "online" });
      }
      this.onEvents(events);
    });
    let opened = false;
    socket.addEventListener("open", () => {
      opened = true;
    });
    socket.addEventListener("close", (closed) => {
      if (socket !== this.socket) return;
      this.socket = null;
      if (this.state.phase === "online") this.lostAt = Date.now();
      const ghost =
        closed.code === Close.NAME_TAKEN &&
        !registeredName(closed.reason) &&
        this.lostAt !== null &&
        Date.now() - this.lostAt < GHOST_GRACE;
      if (FINAL.has(closed.code) && !ghost) {
        this.cause = null;
        this.setState({ phase: "stopped", code: closed.code, reason: closed.reason });
        return;
      }
      if (opened || this.cause === null) this.cause = { code: closed.code, reason: closed.reason };
      const delay = ghost ? Math.min(GHOST_MAX_DELAY, retryDelay(this.attempt)) : retryDelay(this.attempt);
      this.attempt += 1;
      this.timer = setTimeout(() => this.connect(), delay);
      this.setState({ phase: "waiting", ...this.cause, at: Date.now() + delay });
    });
  }

  detach() {
    clearTimeout(this.timer);
    this.timer = null;
    const socket = this.socket;
    this.socket = null;
    if (socket?.readyState === WebSocket.OPEN) {
      socket.close(Close.NORMAL);
    } else if (socket?.readyState === WebSocket.CONNECTING) {
      // Closing a socket still connecting makes the browser log an error: let it open first.
      socket.addEventListener("open", () => socket.close(Close.NORMAL));
    }
  }

  setState(state) {
    this.state = state;
    this.onState(state);
  }
}
