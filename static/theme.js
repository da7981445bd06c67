/* Before the first paint: mark that JavaScript runs (app.css blurs a payload only then; the
   controls that need JavaScript show once app.js wired them), and apply the visitor's chosen theme ("auto" follows the system). */
(function () {
  document.documentElement.classList.add("js");
  try {
    var theme = localStorage.getItem("pwpush-theme");
    if (theme === "light" || theme === "dark") document.documentElement.setAttribute("data-theme", theme);
  } catch (e) { /* storage disabled: follow the system */ }
})();
