// Keyboard use of the worklist: j/k move through the queue, Enter opens, "/" focuses the
// filters, "g d" goes to the dashboard, "?" shows the keys. No dependencies.
(function () {
  "use strict";
  var rows = Array.prototype.slice.call(document.querySelectorAll("table.queue tbody tr"));
  var current = -1;
  var pendingG = false;

  function select(i) {
    if (!rows.length) return;
    current = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, j) { r.classList.toggle("selected", j === current); });
    rows[current].focus();
    rows[current].scrollIntoView({ block: "nearest" });
  }

  function typing(el) {
    var tag = el && el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (el && el.isContentEditable);
  }

  rows.forEach(function (row, i) {
    row.addEventListener("click", function (ev) {
      var tag = ev.target.tagName;
      if (tag !== "A" && tag !== "INPUT" && tag !== "LABEL") window.location = row.dataset.href;
    });
    row.addEventListener("focus", function () { current = i; });
  });

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev.target)) return;
    if (pendingG) {
      pendingG = false;
      if (ev.key === "d") { window.location = "/worklist/dashboard"; return; }
      if (ev.key === "q") { window.location = "/worklist/"; return; }
    }
    if (ev.key === "j") { select(current + 1); ev.preventDefault(); }
    else if (ev.key === "k") { select(current - 1); ev.preventDefault(); }
    else if (ev.key === "Enter" && current >= 0 && rows[current]) { window.location = rows[current].dataset.href; }
    else if (ev.key === "/") {
      var first = document.querySelector("#filters select, #filters input");
      if (first) { first.focus(); ev.preventDefault(); }
    } else if (ev.key === "g") { pendingG = true; }
    else if (ev.key === "?") {
      var help = document.getElementById("help");
      if (help) { help.remove(); return; }
      help = document.createElement("div");
      help.id = "help";
      help.textContent = "j / k: next / previous case · Enter: open · /: filters · g d: dashboard · g q: queue · Alt+S (access key): save review";
      document.body.appendChild(help);
    }
  });
})();

// Drafts: the review form is autosaved (server-side, per reviewer) a moment after each
// change, so an idle log-off, a closed tab or a crash loses at most that moment.
(function () {
  "use strict";
  var form = document.getElementById("review-form");
  var status = document.getElementById("draft-status");
  if (!form || !form.dataset.draft || !status) return;
  var timer = null;

  function save() {
    timer = null;
    var body = new URLSearchParams(new FormData(form));
    fetch(form.dataset.draft, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) {
        if (r.ok && r.url.indexOf("/login") < 0) {
          status.textContent = "Draft saved " + new Date().toLocaleTimeString();
          document.dispatchEvent(new Event("dxsafety:activity"));
        } else if (r.url.indexOf("/login") >= 0) {
          status.textContent = "Your session ended; your answers were kept as a draft. Log in again to continue.";
        } else {
          status.textContent = "Draft not saved (" + r.status + ")";
        }
      })
      .catch(function () { status.textContent = "Draft not saved (offline?)"; });
  }

  function later() {
    if (timer) clearTimeout(timer);
    timer = setTimeout(save, 1200);
  }
  form.addEventListener("input", later);
  form.addEventListener("change", later);
})();

// Idle log-off warning: shown before the server ends an idle session; "Stay signed in"
// pings the server, which renews the session.
(function () {
  "use strict";
  var body = document.body;
  var box = document.getElementById("idle-warning");
  var warnAfter = parseInt(body.dataset.warnSeconds || "0", 10);
  if (!box || !warnAfter) return;
  var timer = null;

  function arm() {
    if (timer) clearTimeout(timer);
    box.hidden = true;
    timer = setTimeout(function () { box.hidden = false; }, warnAfter * 1000);
  }
  document.getElementById("stay-signed-in").addEventListener("click", function () {
    fetch("/worklist/ping", { credentials: "same-origin" }).then(function (r) {
      if (r.ok && r.url.indexOf("/login") < 0) arm();
      else window.location.reload();
    });
  });
  document.addEventListener("dxsafety:activity", arm);
  arm();
})();

// Queue: "select all" for the admin's bulk assignment.
(function () {
  "use strict";
  var all = document.getElementById("select-all");
  if (!all) return;
  all.addEventListener("change", function () {
    document.querySelectorAll("input[name=multi_case]").forEach(function (box) {
      box.checked = all.checked;
    });
  });
})();

// Case page: search the report texts.
(function () {
  "use strict";
  var box = document.getElementById("notes-search");
  if (!box) return;
  var notes = Array.prototype.slice.call(document.querySelectorAll("article.note"));
  var none = document.getElementById("notes-none");
  box.addEventListener("input", function () {
    var q = box.value.trim().toLowerCase();
    var shown = 0;
    notes.forEach(function (n) {
      var hit = !q || n.dataset.text.indexOf(q) >= 0;
      n.hidden = !hit;
      if (hit) shown += 1;
    });
    if (none) none.hidden = shown > 0;
  });
})();
