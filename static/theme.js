/* Before the first paint: mark that JavaScript runs (app.css blurs a payload only then; the
   controls that need JavaScript show once app.js wired them), and apply the visitor's chosen theme ("auto" follows the system). */
(function () {
  var root = document.documentElement;
  root.classList.add("js");
  /* app.js (deferred) runs before DOMContentLoaded and marks <html> wired last. Not wired by
     then (blocked, not loaded, failed in an old browser): no Reveal button can lift the blur,
     so take it off; a blurred secret nobody can read would be a spent view. */
  document.addEventListener("DOMContentLoaded", function () {
    if (!root.classList.contains("wired")) root.classList.remove("js");
  });
  try {
    var theme = localStorage.getItem("pwpush-theme");
    if (theme === "light" || theme === "dark") root.setAttribute("data-theme", theme);
  } catch (e) { /* storage disabled: follow the system */ }
})();
