// Conveyor dashboard: live refresh of the pipeline view, and live logs.
// Plain JavaScript, no build. Pages work without it (reload to refresh).
// The pages hold no inline script or event handler: the Content-Security-Policy allows
// scripts from /static only, so everything interactive is wired here.
(function () {
  "use strict";

  function liveInterval(region) {
    var marker = region.querySelector("[data-interval]");
    return marker ? parseInt(marker.getAttribute("data-interval"), 10) || 0 : 0;
  }

  function busy(region) {
    var a = document.activeElement;
    return a && region.contains(a) && /^(INPUT|TEXTAREA|SELECT)$/.test(a.tagName) && a.value !== "";
  }

  function startRefresh(region) {
    var url = region.getAttribute("data-refresh-url");
    function tick() {
      var ms = liveInterval(region);
      if (!ms) { return; }
      setTimeout(function () {
        if (busy(region) || document.hidden) { tick(); return; }
        fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
          .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
          .then(function (html) {
            var focusedId = document.activeElement && document.activeElement.id;
            region.innerHTML = html;
            if (focusedId) {
              var el = document.getElementById(focusedId);
              if (el) { el.focus(); }
            }
          })
          .catch(function () { /* keep the last view; try again */ })
          .then(tick);
      }, ms);
    }
    tick();
  }

  function followLog(pre) {
    if (!window.EventSource) { return; }
    var src = new EventSource(pre.getAttribute("data-stream"));
    var state = document.getElementById("log-state");
    var first = true;
    src.onmessage = function (e) {
      if (first) { pre.textContent = ""; first = false; }
      var nearBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
      pre.textContent += e.data + "\n";
      if (nearBottom) { pre.scrollTop = pre.scrollHeight; }
    };
    src.addEventListener("end", function (e) {
      src.close();
      if (state) { state.textContent = "The action finished: " + e.data + "."; }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh-url]").forEach(startRefresh);
    document.querySelectorAll("pre[data-stream]").forEach(followLog);
    document.querySelectorAll("a[data-back]").forEach(function (a) {
      a.addEventListener("click", function (e) {
        if (window.history.length > 1) { e.preventDefault(); window.history.back(); }
      });
    });
  });
})();
