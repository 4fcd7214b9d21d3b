// gradesync console: times in the viewer's own time zone. The server writes each time in UTC
// inside <time datetime="..." data-local>; this rewrites the text in the browser's zone and
// keeps the UTC time as the tooltip. Without JavaScript the UTC times stay, zone named.
// console.js calls `gradesyncLocalize(part)` on a part of the page it replaces.
(function () {
  "use strict";
  var minutes, seconds;
  var parts = {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  };
  try {
    minutes = new Intl.DateTimeFormat(undefined, parts);
    parts.second = "2-digit";
    seconds = new Intl.DateTimeFormat(undefined, parts);
  } catch (e) { return; }
  function localize(root) {
    root.querySelectorAll("time[datetime][data-local]").forEach(function (el) {
      if (el.dataset.localized) return;
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at.getTime())) return;
      el.title = el.textContent;
      el.textContent = (el.dataset.local === "seconds" ? seconds : minutes).format(at);
      el.dataset.localized = "true";
    });
  }
  window.gradesyncLocalize = localize;
  localize(document);
})();
