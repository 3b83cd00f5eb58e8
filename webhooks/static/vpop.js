/* Progressive enhancement only: every page works without this file.
 * - an order page polls its JSON and reloads when the order's status changes;
 * - the ISP list refreshes its figures and their ages from /api/v1/isps. */
(function () {
  "use strict";

  function every(ms, fn) {
    var timer = null;
    function run() { fn(function (next) { timer = setTimeout(run, next || ms); }); }
    timer = setTimeout(run, ms);
    return timer;
  }

  var box = document.querySelector("[data-poll]");
  if (box && box.getAttribute("data-final") !== "true") {
    var url = box.getAttribute("data-poll");
    var shown = box.getAttribute("data-order-status");
    every(1000, function (again) {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data && data.status !== shown) { window.location.reload(); return; }
          again(data ? 1000 : 3000);
        })
        .catch(function () { again(3000); });
    });
  }

  // the same precision as vpop.recommend.format_figure
  function figure(v) {
    var size = Math.abs(v);
    if (size === 0) { return "0"; }
    return v.toFixed(size >= 100 ? 0 : size >= 10 ? 1 : size >= 1 ? 2 : 3);
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) { return "not measured"; }
    if (seconds < 90) { return Math.round(seconds) + " s ago"; }
    if (seconds < 5400) { return Math.round(seconds / 60) + " min ago"; }
    return Math.round(seconds / 3600) + " h ago";
  }

  var list = document.querySelector("[data-live-isps]");
  if (list && window.fetch) {
    var source = list.getAttribute("data-live-isps");
    every(10000, function (again) {
      fetch(source, { headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          (data && data.isps || []).forEach(function (isp) {
            var card = list.querySelector('[data-isp="' + CSS.escape(isp.id) + '"]');
            if (!card) { return; }
            Object.keys(isp.qos.age_seconds).forEach(function (figure) {
              var value = card.querySelector('[data-figure="' + figure + '"]');
              var when = card.querySelector('[data-age="' + figure + '"]');
              var v = isp.qos[figure];
              if (value) { value.textContent = (v === null ? "-" : figure(v)); }
              if (when) { when.textContent = age(isp.qos.age_seconds[figure]); }
            });
          });
          again();
        })
        .catch(function () { again(30000); });
    });
  }
})();
