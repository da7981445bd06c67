/* pwpush: copy buttons, reveal/blur, password generator, expiry in words, counters,
   show/hide for passphrases, the print button, confirmation of irreversible actions, theme
   toggle, secret pages emptied as they are left (the back/forward cache).
   Plain JavaScript loaded from this origin (the Content-Security-Policy forbids inline script). */
(function () {
  "use strict";
  var STORE = "pwpush-gen";

  function announce(text) {
    var live = document.getElementById("live-region");
    if (!live) return;
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 30);
  }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  /* ---- copy to clipboard ---- */
  function textOf(el) { return "value" in el && el.tagName !== "PRE" ? el.value : el.textContent; }
  function copy(button) {
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    if (!target) return;
    /* The label it had first: a second click within 1.5 s must not keep "Copied!" for good. */
    if (!button.hasAttribute("data-label")) button.setAttribute("data-label", button.textContent);
    var text = textOf(target), label = button.getAttribute("data-label");
    function done() {
      button.textContent = "Copied!";
      announce("Copied to the clipboard");
      window.clearTimeout(button.copiedTimer);
      button.copiedTimer = window.setTimeout(function () { button.textContent = label; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(target, done); });
    } else { fallback(target, done); }
  }
  function fallback(target, done) {
    if (target.select) { target.select(); } else {
      var range = document.createRange(); range.selectNodeContents(target);
      var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
    }
    try { document.execCommand("copy"); done(); } catch (e) { announce("Press Ctrl+C to copy"); }
  }

  /* ---- reveal / blur ---- */
  var reblur = null;
  function toggleReveal(button) {
    var target = document.getElementById(button.getAttribute("data-reveal-target"));
    var blurred = target.classList.toggle("blurred");
    button.setAttribute("aria-pressed", blurred ? "false" : "true");
    button.textContent = blurred ? "Reveal" : "Hide";
    /* The hint says what the payload is now (its revealed words are the template's). */
    var hint = document.getElementById("blur_hint");
    if (hint) {
      if (!hint.hasAttribute("data-blurred")) hint.setAttribute("data-blurred", hint.textContent);
      hint.textContent = hint.getAttribute(blurred ? "data-blurred" : "data-revealed");
    }
    window.clearTimeout(reblur);
    if (!blurred) reblur = window.setTimeout(function () { if (!target.classList.contains("blurred")) toggleReveal(button); }, 20000);
  }

  /* ---- password generator (upstream's syllable scheme) ---- */
  function randInt(lo, hi) {
    var range = hi - lo + 1, limit = Math.floor(4294967296 / range) * range, buf = new Uint32Array(1);
    do { window.crypto.getRandomValues(buf); } while (buf[0] >= limit);
    return lo + (buf[0] % range);
  }
  function pick(chars) { return chars.charAt(randInt(0, chars.length - 1)); }
  function generate(o) {
    var out = "", lo = Math.max(1, +o.min_syllable_length), hi = Math.max(lo, +o.max_syllable_length);
    for (var i = 0; i < Math.max(1, +o.syllables_count); i++) {
      var len = randInt(lo, hi), s = "";
      for (var j = 0; j < len; j++) s += pick(j % 2 === 0 ? o.consonants : o.vowels);
      if (o.title_cased) s = s.charAt(0).toUpperCase() + s.slice(1);
      if (o.has_numbers) s += String(randInt(0, 9));
      if (i > 0 && o.use_separators && o.separators) s = pick(o.separators) + s;
      out += s;
    }
    return out;
  }
  function setupGenerator(box) {
    var defaults = JSON.parse(box.getAttribute("data-gen")), opts = Object.assign({}, defaults);
    try { Object.assign(opts, JSON.parse(localStorage.getItem(STORE) || "{}")); } catch (e) { /* ignore */ }
    var inputs = box.querySelectorAll("[data-gen-key]");
    function show() {
      inputs.forEach(function (input) {
        var key = input.getAttribute("data-gen-key");
        if (input.type === "checkbox") input.checked = !!opts[key]; else input.value = opts[key];
      });
    }
    inputs.forEach(function (input) {
      input.addEventListener("change", function () {
        var key = input.getAttribute("data-gen-key");
        opts[key] = input.type === "checkbox" ? input.checked : Math.min(10, Math.max(1, parseInt(input.value, 10) || 1));
        try { localStorage.setItem(STORE, JSON.stringify(opts)); } catch (e) { /* ignore */ }
      });
    });
    box.querySelector("[data-gen-reset]").addEventListener("click", function () {
      opts = Object.assign({}, defaults);
      try { localStorage.removeItem(STORE); } catch (e) { /* ignore */ }
      show();
      announce("Generator settings reset");
    });
    var payload = document.getElementById("push_payload"), generated = null;
    box.querySelector("[data-generate]").addEventListener("click", function () {
      if (payload.value && payload.value !== generated &&
          !window.confirm("Replace the text you typed with a generated password?")) return;
      generated = generate(opts);
      payload.value = generated;
      payload.dispatchEvent(new Event("input"));
      announce("Password generated");
    });
    show();
  }

  /* ---- expiry in words, character counters ---- */
  /* The days and views number boxes carry the values; a slider beside each moves them; the
     words say what the server will take (a number past a bound is taken as the bound). */
  function setupExpiry(form) {
    function clamped(number) {
      var value = Math.round(number.valueAsNumber);  /* (NaN when empty or not a number) */
      return isNaN(value) ? null : Math.min(+number.max, Math.max(+number.min, value));
    }
    function update(number, slider) {
      var value = clamped(number);
      if (value === null) return;
      slider.value = value;
      var kind = number.getAttribute("data-expiry"), words = form.querySelector('[data-words="' + kind + '"]');
      if (!words) return;
      /* The edit form: the number left as shown keeps what is left (a push made for an hour
         shows 1 in the days box): say what is left, not "1 day". */
      var kept = words.getAttribute("data-kept-value");
      words.textContent = kept !== null && String(value) === kept ? words.getAttribute("data-kept-words")
        : plural(value, kind === "days" ? "day" : "view");
    }
    form.querySelectorAll("[data-expiry]").forEach(function (number) {
      var slider = form.querySelector('[data-range-for="' + number.id + '"]');
      slider.addEventListener("input", function () { number.value = slider.value; update(number, slider); });
      number.addEventListener("input", function () { update(number, slider); });
      update(number, slider);
    });
    /* A number past its bounds is sent as typed: the server takes the bound and says so, as
       it does without JavaScript (changed here, the box would change silently). An empty box
       (or "1e", no number) is sent as the words say it: the last number, the slider's. */
    form.addEventListener("submit", function () {
      form.querySelectorAll("[data-expiry]").forEach(function (number) {
        if (clamped(number) === null) number.value = form.querySelector('[data-range-for="' + number.id + '"]').value;
      });
    });
  }
  function setupCounter(field) {
    var counter = document.querySelector("#" + field.getAttribute("data-count") + " [data-count-value]");
    var bytes = field.hasAttribute("data-count-bytes");  /* what the server counts: UTF-8 bytes */
    field.addEventListener("input", function () {
      var sent = field.value.replace(/\n/g, "\r\n");  /* a form sends a line break as CR LF */
      counter.textContent = bytes ? new TextEncoder().encode(sent).length : sent.length;
    });
  }

  /* ---- show / hide a passphrase field ---- */
  function togglePassword(button) {
    var input = document.getElementById(button.getAttribute("data-toggle-password"));
    var show = input.type === "password";
    input.type = show ? "text" : "password";
    button.querySelector("[data-label]").textContent = show ? "Hide" : "Show";
    input.focus();
  }

  /* ---- theme toggle ---- */
  function effectiveTheme() {
    var set = document.documentElement.getAttribute("data-theme");
    if (set === "light" || set === "dark") return set;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  function showTheme(button) {
    var dark = effectiveTheme() === "dark";
    button.setAttribute("aria-pressed", dark ? "true" : "false");
    button.querySelector(".theme-label").textContent = "Dark mode";
  }
  function setupTheme(button) {
    button.addEventListener("click", function () {
      var next = effectiveTheme() === "dark" ? "light" : "dark";
      document.documentElement.setAttribute("data-theme", next);
      try { localStorage.setItem("pwpush-theme", next); } catch (e) { /* ignore */ }
      showTheme(button);
    });
    showTheme(button);
  }

  /* ---- a secret leaves the page with its reader ---- */
  /* Browsers keep even no-store pages in their back/forward cache: Back would show a secret
     the server may have deleted. The page is emptied as it is left, and says so if restored. */
  var secret = document.querySelector("[data-secret]");
  if (secret) window.addEventListener("pagehide", function () {
    var note = document.createElement("p");
    note.className = "card";
    note.setAttribute("role", "status");
    note.textContent = "The secret is no longer shown here. If it has views left, its link shows it " +
      "again (and counts another view).";
    secret.replaceChildren(note);
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (button) { copy(button); return; }
    button = event.target.closest("[data-reveal-target]");
    if (button) { toggleReveal(button); return; }
    button = event.target.closest("[data-toggle-password]");
    if (button) { togglePassword(button); return; }
    if (event.target.closest("[data-print]")) window.print();
  });
  /* Irreversible actions (expire a push, replace the API token) ask first. */
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
  document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });
  document.querySelectorAll("[data-gen]").forEach(setupGenerator);
  document.querySelectorAll("[data-expiry-form]").forEach(setupExpiry);
  document.querySelectorAll("[data-count]").forEach(setupCounter);
  document.querySelectorAll("[data-theme-toggle]").forEach(setupTheme);
  /* After a form error: the error summary, else the first field marked invalid (the account
     forms), so a screen reader says the field, "invalid" and its message at once. */
  var summary = document.querySelector("[data-autofocus]") || document.querySelector('main [aria-invalid="true"]');
  if (summary) summary.focus();
  /* Everything wired: app.css shows the controls that need JavaScript (data-js) only now, so
     none shows before a click on it would work, nor at all without JavaScript. */
  document.documentElement.classList.add("wired");
})();
