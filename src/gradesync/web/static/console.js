// gradesync console: follows a running sync live. Polls the run's progress JSON about once a
// second and updates the progress panel; when the run finishes it reloads the course's tables
// and its list of runs in place. Without JavaScript the page still works: reload it to see the
// latest state.
(function () {
  "use strict";
  var panel = document.getElementById("run-progress");
  if (!panel || panel.dataset.finished === "true") return;
  var runId = panel.dataset.runId;
  var url = "/console/runs/" + encodeURIComponent(runId) + "/progress";
  var delay = 800;
  // a page may name the stages in its own words (the SIS's Grade Sync page does)
  var labels = panel.dataset.labels ? JSON.parse(panel.dataset.labels) : {};

  function text(el, value) { if (el) el.textContent = value; }

  function render(p) {
    var status = panel.querySelector('[data-field="status"]');
    if (status) {
      status.textContent = "";
      var strong = document.createElement("strong");
      if (p.finished) {
        status.appendChild(document.createTextNode("Finished: "));
        strong.className = "outcome outcome-" + (p.outcome || "none");
        strong.textContent = p.outcome_label || "no outcome";
        status.appendChild(strong);
      } else {
        strong.textContent = labels[p.stage] || p.stage_label;
        status.appendChild(strong);
        status.appendChild(document.createTextNode("…"));
      }
    }
    var heading = panel.querySelector("h2");
    text(heading, p.finished ? (panel.dataset.doneTitle || "Last sync")
                             : (panel.dataset.runningTitle || "Sync in progress"));
    var items = panel.querySelectorAll("li[data-stage]");
    items.forEach(function (li, i) {
      var cls = (p.finished || i < p.stage_index) ? "done" : (i === p.stage_index ? "current" : "todo");
      li.className = "stage stage-" + cls;
      if (cls === "current") li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
      var hidden = li.querySelector(".visually-hidden");
      text(hidden, { done: "Done:", current: "Now:", todo: "Next:" }[cls]);
    });
    var counts = panel.querySelector('[data-field="counts"]');
    if (counts) {
      counts.textContent = "";
      p.count_items.forEach(function (item) {
        var div = document.createElement("div");
        var dt = document.createElement("dt");
        var dd = document.createElement("dd");
        dt.textContent = item[0];
        dd.textContent = item[1];
        div.appendChild(dt); div.appendChild(dd); counts.appendChild(div);
      });
    }
    var held = panel.querySelector('[data-field="held"]');
    if (held) {  // what holds the run's grades now: a destination's rate limit
      held.textContent = "";
      (p.held || []).forEach(function (h) {
        var para = document.createElement("p");
        var strong = document.createElement("strong");
        para.className = "flash";
        para.dataset.rateLimited = h.destination_id;
        strong.textContent = h.headline;
        para.appendChild(strong);
        para.appendChild(document.createTextNode(" " + h.text));
        held.appendChild(para);
      });
    }
    text(panel.querySelector('[data-field="message"]'), p.message || "");
    panel.dataset.stage = p.stage;
  }

  function load(url, target) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    }).then(function (html) {
      target.innerHTML = html;
      if (window.gradesyncLocalize) window.gradesyncLocalize(target);  // its times, too
    });
  }

  // The panel's tables, and every other part of the page that lists the run (marked
  // data-refresh-url, e.g. the course page's Recent syncs): all say it finished.
  function refreshTables() {
    var loads = [];
    var gridUrl = panel.dataset.gridUrl;
    var target = document.getElementById(panel.dataset.tablesId || "course-tables");
    if (gridUrl && target) loads.push(load(gridUrl, target));
    document.querySelectorAll("[data-refresh-url]").forEach(function (el) {
      loads.push(load(el.dataset.refreshUrl, el));
    });
    return Promise.all(loads);
  }

  function finish() {
    panel.dataset.finished = "true";
    refreshTables().catch(function () { /* the reload link below still works */ })
      .then(function () { panel.dataset.tablesFresh = "true"; });
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (p) {
        render(p);
        if (p.finished) finish(); else window.setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 10000);  // the server restarting: back off, keep trying
        window.setTimeout(poll, delay);
      });
  }
  window.setTimeout(poll, delay);
})();
