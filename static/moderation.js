// Moderation on the page (docs/protocol.md, "Moderation"): the topic above the conversation;
// what this connection may do (the welcome's `role`, `may` and `muted`, then `standing`
// events); a menu of actions on each name in the online list for those who may (a message's
// delete is life.js's); the line each `moderation` event adds to the conversation;
// and the banner that says why this page was kicked, banned, turned away or muted.
import { Close } from "./connection.js";
import { parseCommand } from "./commands.js";

const MUTE_SECONDS = 600; // the name menu's "Mute for 10 minutes"
const BAN_SECONDS = 86_400; // and "Ban for a day"

function when(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function until(event) {
  return event.until ? ` until ${when(event.until)}` : "";
}

function because(event) {
  return event.reason ? `: ${event.reason}` : "";
}

// The line a `moderation` event adds to the conversation.
export function describe(event) {
  const { by, name } = event;
  switch (event.action) {
    case "claim":
      return `${by} claimed the room`;
    case "grant":
      return event.role === "owner" ? `${by} gave the room to ${name}` : `${by} made ${name} a moderator`;
    case "revoke":
      return event.role === "owner" ? `${by} took the room from ${name}` : `${by} removed ${name} as a moderator`;
    case "kick":
      return `${by} kicked ${name}${because(event)}`;
    case "mute":
      return `${by} muted ${name}${until(event)}${because(event)}`;
    case "unmute":
      return event.expired ? `${name} may write again: the mute is over` : `${by} unmuted ${name}`;
    case "ban":
      return `${by} banned ${name}${event.everywhere ? " from the whole server" : ""}${until(event)}${because(event)}`;
    case "unban":
      return `${by} lifted the ban on ${name}${event.everywhere ? " from the whole server" : ""}`;
    case "topic":
      return event.text ? `${by} set the topic: ${event.text}` : `${by} cleared the topic`;
    case "mode":
      return event.members_only ? `${by} made the room members-only` : `${by} opened the room to everyone`;
    case "invite":
      return `${by} invited ${name}`;
    case "uninvite":
      return `${by} took back the invitation of ${name}`;
    case "delete":
      // An author's own: its tombstone says enough.
      return by === name ? null : `${by} deleted a message of ${name}`;
    default:
      return null; // an action this page does not know: the protocol asks to ignore it
  }
}

export class Moderation {
  // send(event) -> whether it went out; say(text): beside the message box; notice(text): a
  // line in the conversation (/help's); changed(): the online list should be drawn again.
  constructor({ topic, banner, send, say, notice, changed }) {
    this.topicElement = topic;
    this.banner = banner;
    this.send = send;
    this.say = say;
    this.notice = notice;
    this.changed = changed;
    this.room = "";
    this.me = "";
    this.owner = null;
    this.moderators = new Set();
    this.may = new Set();
    this.muted = null;
  }

  welcome(event) {
    this.room = event.room;
    this.me = event.name;
    this.owner = event.owner ?? null;
    this.moderators = new Set(event.moderators ?? []);
    this.showTopic(event.topic ?? null);
    this.standing(event);
  }

  // What this connection is and may do: in the welcome, and in each `standing` event.
  standing(event) {
    this.may = new Set(event.may ?? []);
    document.body.dataset.may = [...this.may].join(" ");
    this.muted = event.muted ?? null;
    if (this.muted) {
      const by = this.muted.by ? ` by ${this.muted.by}` : "";
      const why = this.muted.reason ? `: ${this.muted.reason}` : "";
      const end = this.muted.until ? ` until ${when(this.muted.until)}` : "";
      this.showBanner(`You are muted in #${this.room}${end}${by}${why}. You can read, not write.`, "muted");
    } else if (this.banner.dataset.kind === "muted" || this.banner.dataset.kind === "removed") {
      this.showBanner("");
    }
    this.changed();
  }

  // A `moderation` event: what it changes here; returns its line for the conversation.
  event(event) {
    if (event.owner !== undefined) this.owner = event.owner;
    if (event.moderators) this.moderators = new Set(event.moderators);
    if (event.action === "topic") this.showTopic(event.text ? { text: event.text, by: event.by } : null);
    if (event.owner !== undefined || event.moderators) this.changed();
    return describe(event);
  }

  // The connection stopped: say why, when a moderator or the room's door is the reason.
  closed(state) {
    if (state.phase !== "stopped") return;
    if (state.code === Close.FORBIDDEN || state.code === Close.NOT_SIGNED_IN) {
      const why = state.reason || "This room refused this page.";
      this.showBanner(`Removed from #${this.room || "the room"}: ${why}`, "removed");
    }
  }

  showTopic(topic) {
    this.topicElement.hidden = !topic;
    this.topicElement.textContent = topic ? topic.text : "";
    this.topicElement.title = topic?.by ? `Set by ${topic.by}` : "";
  }

  showBanner(text, kind = "") {
    this.banner.hidden = !text;
    this.banner.textContent = text;
    this.banner.dataset.kind = text ? kind : "";
  }

  // What the message box does with a line that starts with "/": true if it was a command
  // (sent, or explained beside the box). `text` comes back for a message to send instead.
  command(line) {
    const parsed = parseCommand(line);
    if (parsed === null) return { handled: false };
    if (parsed.message !== undefined) return { handled: false, text: parsed.message };
    if (parsed.error) return { handled: true, keep: true, say: parsed.error };
    if (parsed.help) {
      for (const [usage, what] of parsed.help) this.notice(`${usage}: ${what}`);
      return { handled: true, say: "" };
    }
    if (!this.send(parsed.event)) return { handled: true, keep: true, say: "Not connected: try again once back." };
    return { handled: true, say: "" };
  }

  // Outranks `name` here, as far as the page knows (the server decides; admins it cannot see).
  outranks(name) {
    if (name === this.owner) return this.may.has("ban_everywhere");
    if (this.moderators.has(name)) return this.may.has("grant");
    return true;
  }

  // The online list's hook: a menu of what this connection may do to `name`.
  decorateName(item, name) {
    if (name === this.me || !this.may.has("kick") || !this.outranks(name)) return;
    const menu = document.createElement("details");
    menu.className = "actions";
    const summary = document.createElement("summary");
    summary.textContent = "\u22ef";
    summary.setAttribute("aria-label", `Actions for ${name}`);
    const list = document.createElement("div");
    list.className = "actions-list";
    const action = (label, event) => {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = label;
      button.addEventListener("click", () => {
        menu.open = false;
        if (!this.send(event)) this.say("Not connected: try again once back.");
      });
      list.append(button);
    };
    action("Kick", { type: "kick", name });
    action("Mute for 10 minutes", { type: "mute", name, seconds: MUTE_SECONDS });
    action("Unmute", { type: "unmute", name });
    action("Ban for a day", { type: "ban", name, seconds: BAN_SECONDS });
    if (this.may.has("grant")) {
      if (this.moderators.has(name)) action("Remove as moderator", { type: "revoke", name, role: "moderator" });
      else action("Make moderator", { type: "grant", name, role: "moderator" });
    }
    menu.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && menu.open) {
        menu.open = false;
        summary.focus();
      }
    });
    menu.append(summary, list);
    item.append(" ", menu);
  }
}
