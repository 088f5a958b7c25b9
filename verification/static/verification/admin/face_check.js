/* The person page: each new photo's face check updates in place while the worker runs, no reload needed
   (issue 11, item 2). Polls the page's status URL (admin, same permission as the page) while any photo is
   pending: every 2 s, slowing to every 10 s, for at most 15 minutes. */
"use strict";
(function () {
  const FIRST_MS = 2000, MAX_MS = 10000, GIVE_UP_MS = 15 * 60 * 1000;
  const BADGES = {
    pending: "va-badge va-badge-quiet face-check-pending",
    ready: "va-badge va-badge-good face-check-ready",
    rejected: "va-badge va-badge-bad face-check-rejected",
  };

  function update(photo) {
    const badge = document.querySelector('.face-check[data-reference-id="' + photo.id + '"]');
    if (!badge || badge.dataset.status === photo.status) return;
    badge.dataset.status = photo.status;
    badge.className = (BADGES[photo.status] || "va-badge") + " face-check";
    badge.textContent = photo.status_label;
    const row = badge.closest("tr");
    if (!row) return;
    const why = row.querySelector("td.field-reason_text");
    if (why) why.textContent = photo.reason_label || "-";
    const face = row.querySelector("td.field-face");
    if (face && photo.face_url) {
      const img = document.createElement("img");
      img.src = photo.face_url;
      img.alt = "aligned face";
      img.style.maxWidth = img.style.maxHeight = "64px";
      const link = document.createElement("a");
      link.href = photo.face_url;
      link.target = "_blank";
      link.appendChild(img);
      face.replaceChildren(link);
    }
  }

  function say(box, pending, failed) {
    if (failed) {
      box.textContent = "Could not ask for the face check's progress; reload the page to see it.";
    } else if (pending) {
      box.textContent = pending + " photo(s) in the face check; this list updates by itself.";
    } else {
      box.textContent = "";
    }
  }

  function start() {
    const box = document.getElementById("face-check-progress");
    if (!box || !box.dataset.url) return;
    if (!document.querySelector('.face-check[data-status="pending"]')) return;
    const began = Date.now();
    let wait = FIRST_MS;
    say(box, document.querySelectorAll('.face-check[data-status="pending"]').length, false);

    function poll() {
      fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (body) {
          body.photos.forEach(update);
          say(box, body.pending, false);
          if (body.pending && Date.now() - began < GIVE_UP_MS) {
            wait = Math.min(MAX_MS, wait * 1.5);
            window.setTimeout(poll, wait);
          }
        })
        .catch(function () { say(box, 0, true); });
    }
    window.setTimeout(poll, wait);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
