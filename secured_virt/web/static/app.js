// secured-virt web console: live VM states and in-place answers on the VM page.
// No framework and no inline script (the CSP forbids it): the page works without this file.
"use strict";

(function () {
  const main = document.querySelector("main[data-page='vms']");
  if (!main) return;
  const csrf = main.dataset.csrf;
  const flash = document.getElementById("flash");
  const live = document.getElementById("live");

  function say(cls, text) {
    flash.hidden = false;
    flash.className = "flash " + cls;
    flash.textContent = text;
  }

  // -- actions: POST in place, show the gate's answer (a refusal names the check) ------------
  document.querySelectorAll("form.act").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      const button = ev.submitter;
      if (!button) return;
      ev.preventDefault();
      const body = new URLSearchParams(new FormData(form));
      body.set("op", button.value);
      const pw = form.querySelector("input[type=password]");
      if (button.dataset.auth && pw && !pw.value) {
        say("denied", button.textContent + " needs your password: type it in the field beside the buttons.");
        pw.focus();
        return;
      }
      form.classList.add("busy");
      fetch(form.action, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
      }).then(function (r) {
        if (r.redirected || r.url.indexOf("/login") >= 0) { window.location = "/login?why=session"; return null; }
        return r.json();
      }).then(function (res) {
        if (!res) return;
        const cls = res.status === 0 ? "ok" : res.status === 3 ? "denied" : "failed";
        say(cls, res.message + (res.check ? " [" + res.check + "]" : ""));
        if (pw) pw.value = "";
        poke();
      }).catch(function (err) {
        say("failed", "The request did not complete: " + err);
      }).finally(function () { form.classList.remove("busy"); });
    });
  });

  // -- live states: a WebSocket while the page is visible -----------------------------------
  let ws = null;
  function poke() { if (ws && ws.readyState === 1) ws.send("poke"); }
  function connect() {
    if (ws || document.hidden) return;
    ws = new WebSocket("wss://" + location.host + "/ws/state?csrf=" + encodeURIComponent(csrf));
    ws.onopen = function () { live.hidden = false; };
    ws.onmessage = function (ev) {
      const msg = JSON.parse(ev.data);
      if (msg.session) { window.location = "/login?why=session"; return; }
      if (msg.error) { live.textContent = "live: " + msg.error; return; }
      live.textContent = "live";
      Object.keys(msg.states || {}).forEach(function (name) {
        const row = document.querySelector("tr[data-vm='" + CSS.escape(name) + "']");
        if (!row) return;
        const cell = row.querySelector(".state");
        if (cell.textContent !== msg.states[name]) {
          cell.textContent = msg.states[name];
          cell.dataset.state = msg.states[name];
          row.classList.add("changed");
          setTimeout(function () { row.classList.remove("changed"); }, 1500);
        }
      });
    };
    ws.onclose = function () { ws = null; live.hidden = true; if (!document.hidden) setTimeout(connect, 5000); };
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { if (ws) ws.close(); } else { connect(); }
  });
  connect();
})();
