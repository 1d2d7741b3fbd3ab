// Slash commands typed in the message box: `/kick NAME reason`, `/mute NAME 10m`, `/ban NAME
// 1d reason`, ... each becomes one moderation event (docs/protocol.md, "Moderation"). A name
// with spaces goes in quotes: `/kick "ann b" spam`. `//text` sends "/text" as a message.

// [usage, what it does]: the lines of /help.
export const HELP = [
  ["/kick NAME [reason]", "close NAME's connection here; NAME may come back"],
  ["/mute NAME [10m] [reason]", "NAME reads but cannot write, for that long (s, m, h, d, w) or until /unmute"],
  ["/unmute NAME", "NAME may write again"],
  ["/ban NAME [1d] [reason]", "kick NAME and keep them out, for that long or until /unban"],
  ["/unban NAME", "let NAME back in"],
  ["/serverban NAME [1d] [reason]", "(admins) ban NAME from every room"],
  ["/serverunban NAME", "(admins) lift a ban from every room"],
  ["/topic [text]", "set the room's topic; nothing clears it"],
  ["/op NAME", "(owner) make NAME, an account, a moderator"],
  ["/deop NAME", "(owner) NAME is a moderator no more"],
  ["/give NAME", "(owner) hand the room over to NAME; you stay a moderator"],
  ["/invite NAME", "(owner) let NAME into the room when it is for members only"],
  ["/uninvite NAME", "(owner) take the invitation back"],
  ["/members-only on|off", "(owner) admit only the owner, moderators, admins and invited accounts"],
  ["/claim", "own this room, if nobody does (accounts only)"],
  ["/help", "this list"],
];

const UNITS = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };
const MAX_SECONDS = 10 * 365 * 86_400;

// "90", "10m", "1h", "2d" -> seconds; null if it is not a duration.
export function duration(word) {
  const found = /^(\d+)([smhdw]?)$/i.exec(word ?? "");
  if (!found) return null;
  const seconds = Number(found[1]) * UNITS[(found[2] || "s").toLowerCase()];
  return seconds >= 1 && seconds <= MAX_SECONDS ? seconds : null;
}

// The first word of `rest` (a "quoted name" as one), and what follows it.
function word(rest) {
  const text = rest.trimStart();
  if (text.startsWith('"')) {
    const end = text.indexOf('"', 1);
    if (end > 0) return [text.slice(1, end), text.slice(end + 1).trim()];
  }
  const space = text.search(/\s/);
  return space < 0 ? [text, ""] : [text.slice(0, space), text.slice(space + 1).trim()];
}

// What a line typed in the box means: null for a plain message; {message} to send as a message
// instead; {event} to send; {help} for /help; {error} for a command that is not right.
export function parseCommand(line) {
  if (!line.startsWith("/")) return null;
  if (line.startsWith("//")) return { message: line.slice(1) };
  const [command, rest] = word(line.slice(1));
  const [name, after] = word(rest);
  const needsName = () => (name ? null : { error: `/${command} needs a name: /help says how` });
  const timed = (type, extra = {}) => {
    const [first, reason] = word(after);
    const seconds = duration(first);
    const event = { type, name, ...extra };
    if (seconds !== null) event.seconds = seconds;
    const why = seconds !== null ? reason : after;
    if (why) event.reason = why;
    return { event };
  };
  switch (command.toLowerCase()) {
    case "help":
      return { help: HELP };
    case "kick":
      return needsName() ?? { event: after ? { type: "kick", name, reason: after } : { type: "kick", name } };
    case "mute":
      return needsName() ?? timed("mute");
    case "ban":
      return needsName() ?? timed("ban");
    case "serverban":
      return needsName() ?? timed("ban", { everywhere: true });
    case "unmute":
    case "unban":
    case "invite":
    case "uninvite":
      return needsName() ?? { event: { type: command.toLowerCase(), name } };
    case "serverunban":
      return needsName() ?? { event: { type: "unban", name, everywhere: true } };
    case "op":
      return needsName() ?? { event: { type: "grant", name, role: "moderator" } };
    case "deop":
      return needsName() ?? { event: { type: "revoke", name, role: "moderator" } };
    case "give":
      return needsName() ?? { event: { type: "grant", name, role: "owner" } };
    case "topic":
      return { event: { type: "topic", text: rest.trim() } };
    case "members-only": {
      const on = { on: true, off: false }[name.toLowerCase()];
      return on === undefined ? { error: "/members-only on, or /members-only off" } : { event: { type: "mode", members_only: on } };
    }
    case "claim":
      return { event: { type: "claim" } };
    default:
      return { error: `Unknown command /${command}: /help lists them (//${command} sends it as a message)` };
  }
}
