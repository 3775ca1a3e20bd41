// secured-virt web console: the VM's serial console in an xterm.js terminal over a WebSocket.
"use strict";

(function () {
  const main = document.querySelector("main[data-page='console']");
  if (!main) return;
  const status = document.getElementById("console-status");
  const term = new Terminal({ convertEol: true, cursorBlink: true, scrollback: 2000 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();
  window.addEventListener("resize", function () { fit.fit(); });
  window.svirtTerminal = term;  // tests read the screen from here

  const url = "wss://" + location.host + "/ws/console/" + encodeURIComponent(main.dataset.vm) +
    "?csrf=" + encodeURIComponent(main.dataset.csrf);
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  let first = true;
  ws.onmessage = function (ev) {
    if (first) {  // svirtd's answer: connected, or refused with the gate's reason
      first = false;
      const msg = JSON.parse(ev.data);
      status.textContent = msg.message + (msg.check ? " [" + msg.check + "]" : "");
      status.className = "flash " + (msg.status === 0 ? "ok" : msg.status === 3 ? "denied" : "failed");
      status.dataset.status = String(msg.status);
      if (msg.status === 0) term.focus();
      return;
    }
    term.write(new Uint8Array(ev.data));
  };
  ws.onclose = function () {
    if (first) { status.textContent = "The console connection was refused or lost."; status.className = "flash failed"; }
    else if (status.dataset.status === "0") { status.textContent += " (disconnected)"; }
    status.dataset.closed = "1";
  };
  term.onData(function (data) { if (ws.readyState === 1) ws.send(data); });
})();
