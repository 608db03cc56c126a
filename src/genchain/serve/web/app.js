// The generate page: a tab per kind of output the server's models can make (text, images), plus "verify a file".
// A tab appears only when GET /v1/models lists a model of a family it serves, so the page never offers what the
// server cannot do; adding a kind (copy briefs, audio) is one more panel with its data-families.

import { api, streamCompletion } from "./api.js";
import { el, formatCount, provenanceExpander, ratingForm, showError } from "./widgets.js";

const $ = (id) => document.getElementById(id);
const TEXT_FAMILIES = ["text", "text-vae"];
const IMAGE_FAMILIES = ["gan", "vae"];

function familyOf(model) {
  return model.genchain?.family ?? "text"; // an OpenAI-style entry without our block is a text model
}

function describeModel(model) {
  const info = model.genchain || {};
  const bits = [info.family, typeof info.params === "number" ? `${formatCount(info.params)} params` : null];
  const known = bits.filter(Boolean);
  return known.length ? `${model.id} (${known.join(", ")})` : model.id;
}

function fillPicker(select, models) {
  select.replaceChildren(...models.map((model) => el("option", { value: model.id, text: describeModel(model) })));
}

// ---- tabs (WAI-ARIA tabs pattern: arrow keys move between tabs, Tab goes into the panel) -------------------

function setUpTabs(models) {
  const families = new Set(models.map(familyOf));
  const tablist = document.querySelector('[role="tablist"]');
  const tabs = [...tablist.querySelectorAll('[role="tab"]')];
  const shown = tabs.filter((tab) => {
    const wanted = tab.dataset.families.split(/\s+/);
    return wanted.includes("*") || wanted.some((family) => families.has(family));
  });
  for (const tab of tabs) tab.hidden = !shown.includes(tab);

  function select(tab, focus) {
    for (const other of shown) {
      const on = other === tab;
      other.setAttribute("aria-selected", String(on));
      other.tabIndex = on ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
    history.replaceState(null, "", `#${tab.id.replace(/^tab-/, "")}`);
  }
  for (const tab of shown) {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (event) => {
      const at = shown.indexOf(tab);
      const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: shown.length - 1 }[event.key];
      if (to === undefined) return;
      event.preventDefault();
      select(shown[(to + shown.length) % shown.length], true);
    });
  }
  const fromHash = shown.find((tab) => tab.id === `tab-${location.hash.slice(1)}`);
  select(fromHash || shown[0], false);
  tablist.hidden = false;
}

// ---- text: streamed completions ---------------------------------------------------------------------------

function textCard(request) {
  const completion = el("span", { class: "completion", "data-role": "completion" });
  const output = el(
    "pre",
    { class: "output", "aria-live": "polite", "aria-busy": "true", "aria-label": "Generated text" },
    el("span", { class: "prompt", text: request.prompt }),
    completion,
  );
  const status = el("p", { class: "status", role: "status", text: "Generating…" });
  const footer = el("div", { class: "card-footer" });
  const settings = [`temperature ${request.temperature}`, `max ${request.max_tokens} tokens`];
  if (request.seed !== undefined) settings.unshift(`seed ${request.seed}`);
  const node = el(
    "article",
    { class: "card", "data-state": "streaming" },
    el("h2", { text: request.model }),
    el("p", { class: "meta", text: settings.join(" · ") }),
    output,
    status,
    footer,
  );
  const done = (state, message) => {
    node.dataset.state = state;
    output.setAttribute("aria-busy", "false");
    status.textContent = message;
  };
  return {
    node,
    append(text) {
      completion.append(text); // a Text node: model output is never parsed as HTML
    },
    finish(extra, finishReason) {
      const id = extra?.artefact_ids?.[0];
      const mark = extra?.watermark;
      const parts = [`Done (${finishReason || "stop"}), ${completion.textContent.length} characters`];
      if (mark) parts.push(mark.applied === false ? "not watermarked" : `watermarked (${mark.scheme || "yes"})`);
      done("done", `${parts.join("; ")}.`);
      if (!id) {
        footer.append(el("p", { class: "error", text: "The server returned no artefact id: this result cannot be rated." }));
        return;
      }
      footer.append(
        el("p", { class: "artefact" }, "Artefact ", el("code", { "data-role": "artefact-id", text: id })),
        provenanceExpander(id),
        ratingForm(id),
      );
    },
    stopped() {
      done("stopped", `Stopped after ${completion.textContent.length} characters. A stopped answer is not stored, so it cannot be rated.`);
    },
    fail(err) {
      done("error", "");
      showError(status, err);
    },
  };
}

function setUpText() {
  const form = $("text-form");
  const generate = $("text-generate");
  const stop = $("text-stop");
  const results = $("text-results");
  let controller = null;
  stop.addEventListener("click", () => controller?.abort());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (controller) return;
    const data = new FormData(form);
    const request = {
      model: data.get("model"),
      prompt: data.get("prompt"),
      max_tokens: Number(data.get("max_tokens")),
      temperature: Number(data.get("temperature")),
    };
    if (data.get("seed") !== "") request.seed = Number(data.get("seed"));
    const card = textCard(request);
    results.prepend(card.node);
    controller = new AbortController();
    generate.disabled = true;
    stop.disabled = false;
    try {
      const { genchain, finishReason } = await streamCompletion(request, {
        signal: controller.signal,
        onText: card.append,
      });
      card.finish(genchain, finishReason);
    } catch (err) {
      if (err.name === "AbortError") card.stopped();
      else card.fail(err);
    } finally {
      controller = null;
      generate.disabled = false;
      stop.disabled = true;
      if (document.activeElement === stop || document.activeElement === document.body) generate.focus();
    }
  });
}

// ---- images: a grid, each image with its provenance and rating -------------------------------------------

function imageSource(item) {
  if (typeof item.b64_json === "string" && /^[A-Za-z0-9+/]+=*$/.test(item.b64_json)) {
    return `data:image/png;base64,${item.b64_json}`;
  }
  if (typeof item.url === "string") {
    const url = new URL(item.url, location.href);
    if (url.protocol === "http:" || url.protocol === "https:") return url.href;
  }
  return null;
}

function imageFigure(item, index, count, request) {
  const id = item.genchain?.artefact_id;
  const src = imageSource(item);
  const what = `Image ${index + 1} of ${count} from ${request.model}${request.prompt ? `, label ${request.prompt}` : ""}`;
  const figure = el("figure", { class: "tile", "data-artefact-id": id });
  figure.append(src ? el("img", { src, alt: what }) : el("p", { class: "error", text: `${what}: no image data` }));
  const caption = el("figcaption");
  if (id) {
    caption.append(
      el("code", { "data-role": "artefact-id", text: id }),
      provenanceExpander(id),
      el("details", { class: "rate" }, el("summary", { text: "Rate" }), ratingForm(id)),
    );
  } else {
    caption.append(el("span", { class: "error", text: "no artefact id: cannot be rated" }));
  }
  figure.append(caption);
  return figure;
}

function setUpImages(models) {
  const form = $("image-form");
  const picker = $("image-model");
  const labels = $("image-labels");
  const button = $("image-generate");
  const status = $("image-status");
  const results = $("image-results");
  const byId = new Map(models.map((model) => [model.id, model]));
  const showLabels = () => {
    const info = byId.get(picker.value)?.genchain || {};
    const names = Array.isArray(info.labels) ? info.labels : Array.isArray(info.classes) ? info.classes : [];
    labels.replaceChildren(...names.map((name) => el("option", { value: String(name) })));
  };
  picker.addEventListener("change", showLabels);
  showLabels();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const request = { model: data.get("model"), n: Number(data.get("n")), response_format: "b64_json" };
    if (data.get("seed") !== "") request.seed = Number(data.get("seed"));
    if (data.get("label").trim()) request.prompt = data.get("label").trim();
    button.disabled = true;
    status.replaceChildren(el("p", { text: "Generating images…" }));
    try {
      const answer = await api("/v1/images/generations", { method: "POST", json: request });
      const items = answer.data || [];
      const grid = el("div", { class: "grid" }, items.map((item, i) => imageFigure(item, i, items.length, request)));
      const settings = [request.model, request.seed !== undefined ? `seed ${request.seed}` : null, request.prompt];
      results.prepend(el("section", { class: "card batch" }, el("h2", { text: settings.filter(Boolean).join(" · ") }), grid));
      status.replaceChildren(el("p", { text: `${items.length} image${items.length === 1 ? "" : "s"} ready.` }));
    } catch (err) {
      showError(status, err);
    } finally {
      button.disabled = false;
    }
  });
}

// ---- verify -------------------------------------------------------------------------------------------------

// A check is ok, failed, or (when it does not apply, such as a watermark on a tiny image) skipped or a warning;
// only failures make a file "not verified", as with `genchain verify`.
const CHECK_LOOK = {
  ok: ["✓", "passed", "pass"],
  failed: ["✗", "failed", "fail"],
  warning: ["!", "warning", "warn"],
  skipped: ["–", "skipped", "skip"],
};
const statusOf = (check) => check.status || (check.ok ? "ok" : "failed");

function setUpVerify() {
  const form = $("verify-form");
  const result = $("verify-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const upload = new FormData();
    upload.append("file", $("verify-file").files[0]);
    const manifest = $("verify-manifest").files[0];
    if (manifest) upload.append("manifest", manifest);
    $("verify-submit").disabled = true;
    result.replaceChildren(el("p", { text: "Checking…" }));
    try {
      const answer = await api("/v1/verify", { method: "POST", form: upload });
      const checks = answer.checks || [];
      const skipped = checks.filter((check) => statusOf(check) === "skipped").length;
      const verdict = answer.ok
        ? `Verified: no check failed${skipped ? ` (${skipped} skipped)` : ""}.`
        : "Not verified: see the failed checks below.";
      const list = el("ul", { class: "checks" });
      for (const check of checks) {
        const [mark, word, css] = CHECK_LOOK[statusOf(check)] || CHECK_LOOK.failed;
        list.append(
          el(
            "li",
            { class: css, "data-status": statusOf(check) },
            el("span", { class: "mark", "aria-hidden": "true", text: mark }),
            el("strong", { text: check.name }),
            ` ${word}`,
            check.detail ? `: ${check.detail}` : "",
          ),
        );
      }
      result.replaceChildren(el("p", { class: answer.ok ? "verdict pass" : "verdict fail", text: verdict }), list);
    } catch (err) {
      showError(result, err);
    } finally {
      $("verify-submit").disabled = false;
    }
  });
}

// ---- start ------------------------------------------------------------------------------------------------

async function main() {
  const pageStatus = $("page-status");
  let models;
  try {
    models = (await api("/v1/models")).data || [];
  } catch (err) {
    showError(pageStatus, new Error(`could not load the model list (${err.message}); reload the page to retry`));
    return;
  }
  if (models.length === 0) {
    pageStatus.replaceChildren(
      el("p", { text: "This server has no models yet: start it with --runs pointing at a directory of runs." }),
    );
  } else {
    pageStatus.replaceChildren();
  }
  fillPicker($("text-model"), models.filter((m) => TEXT_FAMILIES.includes(familyOf(m))));
  fillPicker($("image-model"), models.filter((m) => IMAGE_FAMILIES.includes(familyOf(m))));
  setUpText();
  setUpImages(models);
  setUpVerify();
  setUpTabs(models);
  document.body.dataset.ready = "true"; // for tests and scripts: the page is wired up
}

main();
