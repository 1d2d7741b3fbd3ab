// The chat page: wires the parts together and turns server events (docs/protocol.md) into
// what the user sees. Everything a user wrote is rendered as text, never as HTML.
import * as accounts from "./accounts.js";
import { Composer } from "./composer.js";
import { Close, Connection, registeredName } from "./connection.js";
import { FirstUnread } from "./firstunread.js";
import { Life } from "./life.js";
import { Mentions } from "./mentions.js";
import { NameMenu } from "./menu.js";
import { Messenger } from "./messenger.js";
import { Moderation } from "./moderation.js";
import { Notifier } from "./notify.js";
import { Paging } from "./paging.js";
import { PasswordDialog } from "./password.js";
import { Presence } from "./presence.js";
import { roomPath, Rooms } from "./rooms.js";
import { Search } from "./search.js";
import { DEFAULT_ROOM, SignOn } from "./signon.js";
import { Sound } from "./sound.js";
import { Status } from "./status.js";
import { Timeline } from "./timeline.js";
import { Typing } from "./typing.js";
import { Unread } from "./unread.js";

const $ = (id) => document.getElementById(id);

// The errors that answer a message the user sent: it was not sent.
const REFUSED = new Set(["rate_limited", "not_stored", "empty_text", "muted"]);
const ANNOUNCED = 3; // new messages read out one by one; more are summed up
const ANNOUNCEMENT_LENGTH = 300;
// Beside a name refused because an account has it.
const REGISTERED_HINT = "If it is yours, type its password and sign in.";

let room = "";
let name = "";
// {name, admin} of the account the session cookie signs in, as the server last said; null
// for a guest. The cookie itself is out of the page's reach (HttpOnly): the socket carries it.
let account = null;
let since = null; // what the latest connection asked to resume from
let inRoom = false; // a welcome came since the user picked this room
// From the latest welcome: lets the next connection take the name over from this one, should
// the server still hold it for a connection that dropped on the way (a network blip).
let token = null;
let roomSentAt = 0; // when the room's part of the page last sent: an error after that answers it

// What the room's part of the page sends that the server may refuse (a message, an edit, a
// moderator's order): its `error` is the room's, not the messenger's (requests.js).
function sendForRoom(event) {
  roomSentAt = performance.now();
  return connection.send(event);
}

// Room life (life.js, mentions.js, typing.js, firstunread.js, notify.js, search.js) draws
// into the timeline's items through `decorate`, and hears the events below.
const mentions = new Mentions();
const timeline = new Timeline({
  scroller: $("scroller"),
  list: $("log"),
  jump: $("jump"),
  input: $("text"),
  decorate: (item, message) => {
    life.decorate(item, message);
    firstUnread.decorate(item, message);
  },
});
const life = new Life({
  timeline,
  send: sendForRoom,
  me: () => name,
  editWindow: Number(document.body.dataset.editWindow || 900) * 1000,
  mentions,
});
const typing = new Typing({ input: $("text"), line: $("typing"), send: (event) => connection.send(event) });
const firstUnread = new FirstUnread({
  timeline,
  scroller: $("scroller"),
  button: $("unread-jump"),
  send: (event) => connection.send(event),
  signedIn: () => account !== null,
});
const presence = new Presence({
  list: $("online"),
  count: $("count"),
  decorate: (item, name) => {
    moderation.decorateName(item, name);
    messenger.decorate(item, name);
  },
});
const status = new Status({
  element: $("status"),
  text: $("status-text"),
  countdown: $("countdown"),
  button: $("reconnect"),
});
const unread = new Unread();
const sound = new Sound($("sound"));
const notifier = new Notifier({ toggle: $("notify"), say: (text) => composer.say(text) });
const connection = new Connection({
  url: socketUrl,
  protocols: socketProtocols,
  onEvents: handle,
  onState: stateChanged,
});
const paging = new Paging({ timeline, send: (event) => connection.send(event), onChange: showOlder });
const composer = new Composer({
  form: $("composer"),
  input: $("text"),
  error: $("composer-error"),
  counter: $("counter"),
  maxBytes: Number(document.body.dataset.maxBytes) || 4096,
  send: (text) => {
    typing.sent();
    return sendForRoom({ type: "message", text });
  },
  command: (line) => moderation.command(line),
});
const search = new Search({
  open: $("search-open"),
  panel: $("search-panel"),
  form: $("search"),
  input: $("search-text"),
  close: $("search-close"),
  status: $("search-status"),
  results: $("search-results"),
  more: $("search-more"),
  back: $("search-back"),
  room: () => room,
  reveal: (id) => {
    const item = timeline.itemOf(id);
    item?.scrollIntoView({ block: "center" });
    return item !== null;
  },
});
const moderation = new Moderation({
  topic: $("topic"),
  banner: $("banner"),
  send: sendForRoom,
  say: (text) => composer.say(text),
  notice: (text) => timeline.update(() => timeline.addNotice(text, "moderation")),
  changed: () => presence.render(),
});
// Instant messages, buddies and away messages, for signed-in accounts (messenger.js).
const messenger = new Messenger({
  send: (event) => connection.send(event),
  roomSentAt: () => roomSentAt,
  maxBytes: Number(document.body.dataset.maxBytes) || 4096,
  onChange: () => presence.render(),
  onIncoming: (message) => tell({ messages: [{ name: message.from, text: message.text }], notices: [], direct: true }),
});
const rooms = new Rooms({
  list: $("rooms"),
  allowed: () => connection.online,
  here: () => presence.names.size,
  pick: enter,
});
const signOn = new SignOn({
  form: $("signon"),
  fields: { name: $("name"), password: $("password"), room: $("room") },
  errors: { name: $("name-error"), password: $("password-error"), room: $("room-error") },
  message: $("signon-message"),
  title: $("signon-title"),
  hint: $("signon-hint"),
  passwordHint: $("password-hint"),
  guests: document.body.dataset.guests !== "off",
  registration: document.body.dataset.registration !== "closed",
  submit: signOnAs,
});
const nameMenu = new NameMenu({
  element: $("account"),
  button: $("account-button"),
  label: $("account-name"),
  menu: $("account-menu"),
  items: [
    [$("change-password"), () => passwordDialog.open()],
    [$("sign-out"), signOut],
  ],
});
const passwordDialog = new PasswordDialog({
  dialog: $("password-dialog"),
  form: $("password-form"),
  fields: { current: $("current-password"), next: $("new-password") },
  errors: { current: $("current-password-error"), next: $("new-password-error") },
  part: $("password-fields"),
  message: $("password-message"),
  submitButton: $("password-submit"),
  closeButton: $("password-close"),
  submit: accounts.changePassword,
  signedOut: () => sessionEnded("Your session has ended: sign in again."),
});

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // Signed in, the cookie says who this is, and the server takes no name from the URL.
  const query = new URLSearchParams(account ? { room } : { room, name });
  since = timeline.lastId;
  if (since !== null) {
    query.set("since", String(since));
    // Ids count within an epoch: the server honours `since` only in the one it came from.
    if (timeline.epoch !== null) query.set("epoch", timeline.epoch);
  }
  return `${scheme}//${location.host}/ws?${query}`;
}

// The token is a key to the name: it travels in a header, never in the URL, which access
// logs keep (docs/protocol.md, "Resuming").
function socketProtocols() {
  return token === null ? ["chatroom"] : ["chatroom", `chatroom.token.${token}`];
}

// Room names are compared as the server does, near enough: `Lobby` is `lobby`.
function sameRoom(a, b) {
  return a.normalize("NFKC").toLowerCase() === b.normalize("NFKC").toLowerCase();
}

// The sign-on form's submit: signs in or creates an account first if asked, then connects.
async function signOnAs(action, wanted) {
  if (action === "signin" || action === "register") {
    const answer = await (action === "signin" ? accounts.signIn : accounts.register)(wanted.name, wanted.password);
    if (!answer.ok) {
      const reason = accounts.reasonOf(answer);
      signOn.refuse(answer.error === "registered" ? `${reason} ${REGISTERED_HINT}` : reason, accounts.fieldOf(answer));
      return;
    }
    setAccount(answer.data);
  }
  connectTo(wanted.room, action === "guest" ? wanted.name : "");
}

function connectTo(wantedRoom, wantedName) {
  if (!sameRoom(wantedRoom, room)) forgetRoom();
  room = wantedRoom;
  name = wantedName;
  inRoom = false;
  token = null;
  connection.start();
}

// Another room from the list, under the same name.
function enter(next) {
  connection.stop();
  forgetRoom();
  room = next;
  inRoom = false;
  token = null;
  $("room-title").textContent = `#${next}`;
  connection.start();
}

function setAccount(signedIn) {
  account = signedIn;
  signOn.setAccount(signedIn);
  if (signedIn) nameMenu.show(signedIn.name);
  else nameMenu.hide();
}

// Out of the room: the connection ends, the conversation is put away.
function stopChat() {
  connection.stop();
  rooms.stop();
  messenger.stop();
  inRoom = false;
  token = null;
  showChat(false);
}

// Back to the sign-on form, which asks only for a room when signed in.
function leaveRoom() {
  stopChat();
  signOn.show();
}

// Signing out ends the session on the server. The page lets go of its socket first, so
// that the close the server then sends every connection of the session is not news to it.
async function signOut() {
  stopChat();
  const answer = await accounts.signOut();
  if (!answer.ok) {
    signOn.show();
    signOn.refuse(`Not signed out: ${accounts.reasonOf(answer)}`);
    return;
  }
  passwordDialog.close();
  setAccount(null);
  signOn.show();
  signOn.say("Signed out.");
}

// The server ended the session (signed out elsewhere, the password changed elsewhere, the
// account removed): back to signing in, with the reason.
function sessionEnded(reason) {
  stopChat();
  passwordDialog.close();
  setAccount(null);
  signOn.show(room);
  signOn.refuse(reason);
}

function forgetRoom() {
  timeline.clear();
  typing.reset();
  search.reset();
  presence.reset([], "");
  composer.forget();
  $("rooms").replaceChildren();
}

function showChat(on) {
  $("chat").hidden = !on;
  $("leave").hidden = !on;
  if (on) signOn.hide();
}

function stateChanged(state) {
  status.show(state, { name, room });
  moderation.closed(state);
  document.body.dataset.connection = state.phase;
  if (state.phase !== "stopped") return;
  if (state.code === Close.NOT_SIGNED_IN) {
    // A connection that signs nobody in is refused only by a server that has no guests.
    if (!account) signOn.allowGuests(false);
    sessionEnded(sentence(state.reason || "Sign in to chat here."));
  } else if (state.code === Close.NAME_TAKEN || state.code === Close.INVALID_NAME) {
    showChat(false);
    rooms.stop();
    signOn.show(room);
    const field = state.code === Close.INVALID_NAME && /^the room name/i.test(state.reason) ? "room" : "name";
    let reason = state.reason || "That name cannot be used here; pick another.";
    if (!account && registeredName(reason)) reason = `${sentence(reason)} ${REGISTERED_HINT}`;
    signOn.refuse(reason, field);
  }
}

function sentence(text) {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

function handle(events) {
  const news = { messages: [], notices: [], paged: false };
  timeline.update(() => {
    for (const event of events) {
      switch (event.type) {
        case "welcome":
          if (!welcome(event, news)) return;
          break;
        case "message":
          message(event, news);
          break;
        case "join":
          mentions.know(event.name);
          messenger.presence(event);
          if (presence.join(event.name, event.guest === true)) notice(news, `${event.name} joined`, "join");
          break;
        case "leave":
          typing.gone(event.name);
          messenger.presence(event);
          if (presence.leave(event.name)) notice(news, `${event.name} left`, "leave");
          break;
        case "edit":
        case "delete":
        case "reactions":
          if (sameRoom(event.room, room)) life.apply(event);
          break;
        case "typing":
          typing.heard(event);
          break;
        case "moderation": {
          const line = sameRoom(event.room, room) ? moderation.event(event) : null;
          if (line) {
            timeline.addNotice(line, "moderation");
            announce(line);
          }
          break;
        }
        case "standing":
          if (sameRoom(event.room, room)) moderation.standing(event);
          break;
        case "history":
          if (sameRoom(event.room, room)) {
            for (const older of paging.answered(event)) timeline.addMessage(older);
            news.paged = true;
          }
          break;
        case "error":
          // A history request refused (a server that does not page, or not like this): the
          // page makes do with what welcomes give. This page sends nothing else that could be.
          if ((event.code === "unknown_type" || event.code === "bad_event") && paging.refused()) break;
          if (messenger.refused(event)) break;
          if (REFUSED.has(event.code)) composer.refused(event.detail);
          else composer.say(event.detail);
          break;
        default:
          // Events this page does not know are ignored, as the protocol asks.
          messenger.handle(event);
      }
    }
  });
  if (news.paged) paging.next();
  loadOlderIfInView();
  tell(news);
  firstUnread.seen();
}

function notice(news, text, kind) {
  timeline.addNotice(text, kind);
  news.notices.push({ text, kind });
}

// Returns false if the connection is not who the page took it for: it stopped it.
function welcome(event, news) {
  if (event.guest === true && account) {
    // The page believed it was signed in, but the socket carried no session: it was signed
    // out in another tab of this browser meanwhile.
    sessionEnded("You were signed out: sign in again.");
    return false;
  }
  // And signed in by another tab of this browser, it speaks under that account.
  if (event.guest === false && !account) setAccount({ name: event.name, admin: false });
  const returning = inRoom;
  room = event.room;
  name = event.name;
  inRoom = true;
  token = event.token ?? null;
  timeline.me = name;
  messenger.welcomed(event);
  mentions.setMe(name);
  typing.reset();
  const otherEpoch = timeline.enter(event.epoch);
  for (const message of event.history) {
    if (timeline.addMessage(message) && returning && message.name !== name) news.messages.push(message);
  }
  moderation.welcome(event);
  presence.reset(event.online, name, event.guests);
  for (const person of event.online) mentions.know(person);
  firstUnread.welcomed(event, name);
  composer.resumed(event.history, name);
  paging.welcomed(event, since, otherEpoch);
  signOn.accepted(room, name, event.guest);
  status.show(connection.state, { name, room });
  showChat(true);
  $("room-title").textContent = `#${room}`;
  unread.setRoom(room);
  rooms.start(room);
  history.replaceState(null, "", roomPath(room));
  if (!returning) $("text").focus();
  return true;
}

function message(event, news) {
  if (!sameRoom(event.room, room)) return;
  typing.gone(event.name);
  if (timeline.addMessage(event) && event.name !== name) news.messages.push(event);
  if (event.name === name) composer.echoed(event.text);
}

// Tell the user what is new: the live region, the tab title, a sound.
// direct: the messages are instant messages to the user, each as much for them as a mention.
function tell({ messages, notices, direct = false }) {
  if (messages.length > ANNOUNCED) {
    announce(`${messages.length} new messages`);
  } else {
    for (const { name: from, text } of messages) announce(`${from}: ${text.slice(0, ANNOUNCEMENT_LENGTH)}`);
  }
  for (const { text } of notices.slice(-ANNOUNCED)) announce(text);
  const mentioned = direct ? messages : messages.filter((message) => mentions.mentionsMe(message.text));
  unread.add(messages.length, mentioned.length);
  for (const message of mentioned.slice(-ANNOUNCED)) {
    if (direct) notifier.direct(message.name, message.text);
    else notifier.mention(message, room);
  }
  if (messages.length) sound.play("message");
  else if (notices.length) sound.play(notices.at(-1).kind);
  if (notices.length) {
    rooms.render();
    rooms.refreshSoon();
  }
}

function announce(text) {
  const announcer = $("announcer");
  const line = document.createElement("p");
  line.textContent = text;
  announcer.append(line);
  while (announcer.childElementCount > ANNOUNCED) announcer.firstElementChild.remove();
}

function showOlder() {
  const older = $("older");
  older.hidden = !paging.canLoadOlder;
  older.disabled = paging.loading;
  older.textContent = paging.loading ? "Loading older messages…" : "Load older messages";
}

// Reaching the top of the conversation loads what came before. Asked after every change
// as well as by the observer, whose news can be a layout late: once a page of history
// pushed the top out of view, the next page waits until the reader scrolls up again.
function loadOlderIfInView() {
  const older = $("older");
  if (older.hidden || paging.loading) return;
  if (older.getBoundingClientRect().bottom > $("scroller").getBoundingClientRect().top) paging.loadOlder();
}

new IntersectionObserver((entries) => entries.at(-1).isIntersecting && loadOlderIfInView(), {
  root: $("scroller"),
}).observe($("older"));
$("older").addEventListener("click", () => paging.loadOlder());

$("reconnect").addEventListener("click", () => connection.retryNow());
$("leave").addEventListener("click", leaveRoom);

// On a phone the lists start folded, leaving the conversation the room it needs.
if (matchMedia("(max-width: 40rem)").matches) {
  $("people").open = false;
  $("rooms-panel").open = false;
}

// Signed in already (the session outlives a reload): straight into the room of the link,
// or the last one. Otherwise, the sign-on form.
const signedIn = await accounts.currentAccount();
if (signedIn) {
  setAccount(signedIn);
  connectTo(signOn.room || DEFAULT_ROOM, "");
} else {
  signOn.show();
}
