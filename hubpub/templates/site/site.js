// hubpub's collection site: the models filter and the copy buttons. No libraries, nothing fetched.
"use strict";

function applyFilters() {
  const kind = document.getElementById("filter-kind").value;
  const dataset = document.getElementById("filter-dataset").value;
  let shown = 0;
  for (const row of document.querySelectorAll("#models tbody tr")) {
    const visible = (!kind || row.dataset.kind === kind) && (!dataset || row.dataset.dataset === dataset);
    row.hidden = !visible;
    if (visible) shown += 1;
  }
  document.getElementById("shown").textContent = shown + " shown";
}

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text).catch(() => fallbackCopy(text));
  }
  return Promise.resolve(fallbackCopy(text));
}

function fallbackCopy(text) {  // file:// pages are not always a secure context
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "absolute";
  area.style.left = "-9999px";
  document.body.appendChild(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const id of ["filter-kind", "filter-dataset"]) {
    const select = document.getElementById(id);
    if (select) select.addEventListener("change", applyFilters);
  }
  for (const code of document.querySelectorAll("pre > code")) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy this code");
    button.addEventListener("click", () => {
      copyText(code.textContent).then(() => {
        button.textContent = "Copied";
        button.dataset.copied = code.textContent;
      });
    });
    code.parentElement.appendChild(button);
  }
});
