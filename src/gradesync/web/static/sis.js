// gradesync console, SIS passback page: the box in the head of the activity table ticks or
// clears every activity to post. Without JavaScript each box is ticked one by one.
(function () {
  "use strict";
  var all = document.querySelector('[data-check-all="post"]');
  if (!all) return;
  var boxes = document.querySelectorAll('[data-check="post"]');
  function sync() {
    var ticked = Array.prototype.filter.call(boxes, function (b) { return b.checked; }).length;
    all.checked = ticked === boxes.length && boxes.length > 0;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
  }
  all.addEventListener("change", function () {
    boxes.forEach(function (b) { b.checked = all.checked; });
  });
  boxes.forEach(function (b) { b.addEventListener("change", sync); });
  sync();
})();
