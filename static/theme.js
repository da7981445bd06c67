/* Apply the visitor's chosen theme before the first paint ("auto" follows the system). */
(function () {
  try {
    var theme = localStorage.getItem("pwpush-theme");
    if (theme === "light" || theme === "dark") document.documentElement.setAttribute("data-theme", theme);
  } catch (e) { /* storage disabled: follow the system */ }
})();
