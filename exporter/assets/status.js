"use strict";
// Refreshes the status page in place: fetches the same URL and swaps in the new <main> (rendered by the server,
// so there is one renderer). Without JavaScript the page is complete; reload it to update.
(function () {
  var main = document.getElementById("status");
  var slot = document.getElementById("refresh");
  if (!main || !slot || !window.fetch || !window.DOMParser) {
    return;
  }
  var period = 1000 * (parseInt(main.getAttribute("data-refresh"), 10) || 5);
  var paused = false;
  var state = document.createElement("span");
  var button = document.createElement("button");
  button.type = "button";
  button.textContent = "pause";
  slot.appendChild(state);
  slot.appendChild(button);
  state.textContent = "auto-refresh every " + period / 1000 + " s";
  button.addEventListener("click", function () {
    paused = !paused;
    button.textContent = paused ? "resume" : "pause";
    state.textContent = paused ? "auto-refresh paused" : "auto-refresh every " + period / 1000 + " s";
  });
  function refresh() {
    if (paused || document.hidden) {
      window.setTimeout(refresh, period);
      return;
    }
    window.fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("status");
        if (fresh) {
          main.replaceWith(fresh);
          main = fresh;
          document.documentElement.setAttribute("data-refreshed", String(Date.now()));
          state.textContent = "auto-refresh every " + period / 1000 + " s";
        }
      })
      .catch(function (error) {
        state.textContent = "refresh failed (" + error.message + "), retrying";
      })
      .then(function () {
        window.setTimeout(refresh, period);
      });
  }
  window.setTimeout(refresh, period);
})();
