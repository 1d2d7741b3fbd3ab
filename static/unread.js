// While the tab is hidden, the title counts the messages that arrived: "(3) #lobby · chatroom",
// and those that mention the user too: "(3, @1) #lobby · chatroom".
export class Unread {
  constructor() {
    this.count = 0;
    this.mentions = 0;
    this.room = "";
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) {
        this.count = 0;
        this.mentions = 0;
        this.render();
      }
    });
  }

  setRoom(room) {
    this.room = room;
    this.render();
  }

  add(count, mentions = 0) {
    if (!document.hidden || count === 0) return;
    this.count += count;
    this.mentions += mentions;
    this.render();
  }

  render() {
    const base = this.room ? `#${this.room} · chatroom` : "chatroom";
    const mentions = this.mentions ? `, @${this.mentions}` : "";
    document.title = this.count ? `(${this.count}${mentions}) ${base}` : base;
  }
}
