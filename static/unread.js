// While the tab is hidden, the title counts the messages that arrived: "(3) #lobby · chatroom".
export class Unread {
  constructor() {
    this.count = 0;
    this.room = "";
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) {
        this.count = 0;
        this.render();
      }
    });
  }

  setRoom(room) {
    this.room = room;
    this.render();
  }

  add(count) {
    if (!document.hidden || count === 0) return;
    this.count += count;
    this.render();
  }

  render() {
    const base = this.room ? `#${this.room} · chatroom` : "chatroom";
    document.title = this.count ? `(${this.count}) ${base}` : base;
  }
}
