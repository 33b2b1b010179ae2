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
      if (ev.target.tagName !== "A") window.location = row.dataset.href;
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
