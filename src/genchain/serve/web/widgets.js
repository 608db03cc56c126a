// Building blocks both pages share: a DOM helper that only ever writes text (model output is untrusted: it is
// set with textContent / Text nodes, never parsed as HTML), the provenance expander, the rating form and the
// error line. Each widget talks to the API itself so a result card is just "artefact id in, widgets out".

import { api } from "./api.js";

let counter = 0;
/** A page-unique id, for tying labels to inputs. */
export function uid(prefix) {
  counter += 1;
  return `${prefix}-${counter}`;
}

/**
 * Create an element. `props.text` sets textContent, `props.class` the class, `on*` add listeners, anything else
 * becomes an attribute (true -> present, false/null/undefined -> absent). String children become Text nodes.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** Put an error where the person is looking; role=alert makes screen readers say it at once. */
export function showError(target, err) {
  target.replaceChildren(el("p", { class: "error", role: "alert", text: `Error: ${err.message || err}` }));
}

/** "1.2M" for a parameter count; the raw value when it is not a number. */
export function formatCount(value) {
  if (typeof value !== "number") return value === undefined || value === null ? "" : String(value);
  if (value >= 1e9) return `${(value / 1e9).toFixed(1)}B`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  return String(value);
}

function formatTime(value) {
  if (value === undefined || value === null) return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toISOString().replace(".000Z", "Z");
}

function describeSigner(signer) {
  if (!signer) return "not signed (yet)";
  return `${signer.name || "?"} (key ${signer.key_id || "?"})`;
}

function describeLedger(receipt) {
  if (!receipt) return "not entered in the ledger";
  return `entry ${receipt.index}`;
}

function describeWatermark(mark) {
  if (!mark) return "none";
  if (mark.applied) return `applied (${mark.scheme || "scheme unknown"})`;
  return `not applied${mark.reason ? `: ${mark.reason}` : ""}`;
}

function describeC2pa(c2pa) {
  if (!c2pa) return "none";
  if (c2pa.embedded) return `embedded (${c2pa.format || "format unknown"})`;
  return `not embedded${c2pa.reason ? `: ${c2pa.reason}` : ""}`;
}

function provenanceList(artefact) {
  const manifest = artefact.manifest || {};
  const rows = [
    ["artefact", artefact.id, "id"],
    ["kind", artefact.kind, "kind"],
    ["model", artefact.model, "model"],
    ["created", formatTime(artefact.created), "created"],
    ["sha256", artefact.sha256, "sha256"],
  ];
  const signedSha = manifest.artefact?.sha256;
  if (signedSha && signedSha !== artefact.sha256) rows.push(["signed file sha256", signedSha, "signed-sha256"]);
  rows.push(
    ["signer", describeSigner(manifest.signer), "signer"],
    ["ledger", describeLedger(manifest.receipt), "ledger"],
    ["watermark", describeWatermark(manifest.watermark), "watermark"],
    ["C2PA", describeC2pa(manifest.c2pa), "c2pa"],
  );
  const list = el("dl", { class: "facts" });
  for (const [term, value, field] of rows) {
    list.append(el("dt", { text: term }), el("dd", { text: value ?? "", "data-field": field }));
  }
  const links = el("p", { class: "links" });
  if (artefact.content_url) links.append(el("a", { href: artefact.content_url, download: "", text: "download the file" }));
  const raw = el(
    "details",
    { class: "raw" },
    el("summary", { text: "signed manifest (JSON)" }),
    el("pre", { text: JSON.stringify(manifest, null, 2) }),
  );
  return [list, links, raw];
}

/**
 * A closed <details> that fetches GET /v1/artefacts/{id} the first time it is opened: most results are never
 * inspected, so the page does not pay for manifests nobody reads. A failed load can be retried by reopening.
 */
export function provenanceExpander(artefactId) {
  const body = el("div", { class: "provenance-body", "aria-live": "polite" }, el("p", { text: "Loading…" }));
  const details = el("details", { class: "provenance" }, el("summary", { text: "Provenance" }), body);
  let state = "idle";
  details.addEventListener("toggle", async () => {
    if (!details.open || state !== "idle") return;
    state = "loading";
    try {
      const artefact = await api(`/v1/artefacts/${encodeURIComponent(artefactId)}`);
      body.replaceChildren(...provenanceList(artefact));
      // Signing runs just after generation: until it is done there is no manifest; reopening asks again.
      state = artefact.manifest ? "done" : "idle";
      if (!artefact.manifest) body.append(el("p", { class: "hint", text: "Not signed yet: close and reopen." }));
    } catch (err) {
      showError(body, err);
      state = "idle";
    }
  });
  return details;
}

function thumbButton(label, symbol, onPress) {
  const button = el("button", { type: "button", class: "thumb", "aria-pressed": "false", "aria-label": label });
  button.append(el("span", { "aria-hidden": "true", text: symbol }));
  button.addEventListener("click", () => onPress(button));
  return button;
}

/**
 * Thumbs up/down, 1-5 stars and a comment, sent together as one POST /v1/feedback. The outcome (the stored
 * row's id, or the server's error) is always written to a status line: feedback that silently vanishes teaches
 * people to stop giving it.
 */
export function ratingForm(artefactId) {
  const id = uid("rate");
  let thumbs = null;
  const up = thumbButton("Thumbs up", "▲ up", press);
  const down = thumbButton("Thumbs down", "▼ down", press);
  function press(button) {
    const value = button === up ? "up" : "down";
    thumbs = thumbs === value ? null : value;
    up.setAttribute("aria-pressed", String(thumbs === "up"));
    down.setAttribute("aria-pressed", String(thumbs === "down"));
  }
  const stars = el("fieldset", { class: "stars" }, el("legend", { text: "Rating" }));
  for (let n = 1; n <= 5; n += 1) {
    const input = el("input", { type: "radio", name: `${id}-stars`, id: `${id}-star${n}`, value: String(n) });
    stars.append(input, el("label", { for: `${id}-star${n}`, "aria-label": `${n} star${n > 1 ? "s" : ""}` }, `${n}★`));
  }
  const comment = el("textarea", { id: `${id}-comment`, rows: "2", maxlength: "2000" });
  const status = el("p", { class: "status", role: "status" });
  const submit = el("button", { type: "submit", text: "Send feedback" });
  const form = el(
    "form",
    { class: "rating", "aria-label": "Rate this result" },
    el("div", { class: "thumbs", role: "group", "aria-label": "Thumbs" }, up, down),
    stars,
    el("label", { for: `${id}-comment`, text: "Comment (optional)" }),
    comment,
    el("div", { class: "actions" }, submit),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const checked = form.querySelector(`input[name="${id}-stars"]:checked`);
    const body = {
      artefact_id: artefactId,
      thumbs,
      rating: checked ? Number(checked.value) : null,
      comment: comment.value.trim() || null,
    };
    if (body.thumbs === null && body.rating === null && body.comment === null) {
      status.className = "status error";
      status.textContent = "Choose a thumb or a rating, or write a comment, then send.";
      return;
    }
    submit.disabled = true;
    status.className = "status";
    status.textContent = "Sending…";
    try {
      const saved = await api("/v1/feedback", { method: "POST", json: body });
      status.textContent = `Thank you: feedback saved (#${saved.id}).`;
    } catch (err) {
      status.className = "status error";
      status.textContent = `Feedback not saved: ${err.message}`;
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
