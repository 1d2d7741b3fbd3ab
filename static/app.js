// The chat page: connects to /ws on the page's own host and renders events as text only.
const $ = (id) => document.getElementById(id);

let socket = null;
const online = new Set();

function wsUrl(room, name) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams({ room, name });
  return `${scheme}//${location.host}/ws?${query}`;
}

function line(kind, ...parts) {
  const item = document.createElement("li");
  item.className = kind;
  for (const [cls, text] of parts) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    item.append(span);
  }
  $("log").append(item);
  item.scrollIntoView({ block: "end" });
}

function showMessage(message) {
  const time = new Date(message.ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  line("message", ["time", time], ["name", message.name], ["text", message.text]);
}

function renderOnline() {
  const list = $("online");
  list.replaceChildren(...[...online].map((name) => {
    const item = document.createElement("li");
    item.textContent = name;
    return item;
  }));
  $("count").textContent = String(online.size);
}

function handle(event) {
  switch (event.type) {
    case "welcome":
      online.clear();
      event.online.forEach((name) => online.add(name));
      renderOnline();
      $("status").textContent = `${event.name} in ${event.room}`;
      $("signon").hidden = true;
      $("chat").hidden = false;
      event.history.forEach(showMessage);
      $("text").focus();
      break;
    case "message":
      showMessage(event);
      break;
    case "join":
      online.add(event.name);
      renderOnline();
      line("notice", ["text", `${event.name} joined`]);
      break;
    case "leave":
      online.delete(event.name);
      renderOnline();
      line("notice", ["text", `${event.name} left`]);
      break;
    case "error":
      line("error", ["text", event.detail]);
      break;
  }
}

function signOn(room, name) {
  socket = new WebSocket(wsUrl(room, name));
  $("status").textContent = "connecting…";
  socket.addEventListener("message", (frame) => {
    for (const text of frame.data.split("\n")) handle(JSON.parse(text));
  });
  socket.addEventListener("close", (closed) => {
    $("status").textContent = "signed off";
    if (closed.code >= 4000) {
      $("signon-error").textContent = closed.reason;
      $("signon").hidden = false;
      $("chat").hidden = true;
    } else {
      line("error", ["text", `disconnected (${closed.code})`]);
    }
  });
}

$("signon").addEventListener("submit", (event) => {
  event.preventDefault();
  $("signon-error").textContent = "";
  signOn($("room").value.trim(), $("name").value.trim());
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ type: "message", text }));
  $("text").value = "";
});

$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
