// The console's only script: keeps a billing run's progress live.
// An element with data-poll="URL" is refreshed from URL (an HTML fragment) every second
// until the fragment says data-finished="true". Without JavaScript, reloading does the same.
(function () {
  "use strict";
  function poll(box) {
    var url = box.getAttribute("data-poll");
    var timer = window.setInterval(function () {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (html === null) { window.clearInterval(timer); return; }
          box.innerHTML = html;
          if (box.querySelector('[data-finished="true"]')) {
            window.clearInterval(timer);
            box.removeAttribute("data-poll");
          }
        })
        .catch(function () { window.clearInterval(timer); });
    }, 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
  });
})();
