// gradesync console: times in the viewer's own time zone. The server writes each time in UTC
// inside <time datetime="..." data-local>; this rewrites the text in the browser's zone and
// keeps the UTC time as the tooltip. Without JavaScript the UTC times stay, zone named.
(function () {
  "use strict";
  var fmt;
  try {
    fmt = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
  } catch (e) { return; }
  document.querySelectorAll("time[datetime][data-local]").forEach(function (el) {
    var at = new Date(el.getAttribute("datetime"));
    if (isNaN(at.getTime())) return;
    el.title = el.textContent;
    el.textContent = fmt.format(at);
  });
})();
