/* hostapp web view: live updates of a run's page (server-sent events), nothing else.
   The server renders every page; this script only swaps in the fresh waterfall of a run
   that is still running. No build step, no dependencies. */
(function () {
  "use strict";
  var live = document.getElementById("run-live");
  if (!live || !live.dataset.stream || !window.EventSource) {
    return;
  }
  var source = new EventSource(live.dataset.stream);
  var timer = null;
  var busy = false;

  function refresh() {
    timer = null;
    if (busy) {
      schedule();
      return;
    }
    busy = true;
    fetch(live.dataset.fragment, { credentials: "omit", cache: "no-store" })
      .then(function (reply) { return reply.ok ? reply.text() : null; })
      .then(function (html) {
        if (html !== null) {
          live.innerHTML = html;
          live.dataset.updated = String(Date.now());
        }
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }

  function schedule() {
    if (timer === null) {
      timer = setTimeout(refresh, 250);
    }
  }

  source.addEventListener("changed", schedule);
  source.addEventListener("ended", function () {
    source.close();
    live.removeAttribute("data-stream");
    schedule();
  });
})();
