// Live SLA clocks: every [data-due] badge counts down each second and turns "breached" when its
// due time passes (the server's state — ok / warning / met — is the starting point).
(function () {
  const clocks = document.querySelectorAll("[data-due]");
  const late = document.documentElement.lang.startsWith("zh") ? "超时" : "late";
  function format(ms) {
    const total = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : m) + ":" + String(s).padStart(2, "0");
  }
  function tick() {
    const now = Date.now();
    clocks.forEach((clock) => {
      const left = Date.parse(clock.dataset.due) - now;
      const label = clock.querySelector(".left");
      if (left < 0) {
        clock.classList.remove("ok", "warning");
        clock.classList.add("breached");
        label.textContent = late + " " + format(left);
      } else {
        label.textContent = format(left);
      }
    });
  }
  if (clocks.length) { tick(); setInterval(tick, 1000); }
})();
