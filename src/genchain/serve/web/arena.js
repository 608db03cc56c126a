// The A/B arena: one prompt, two anonymous answers, one vote, then the reveal. Names stay hidden until the vote
// is stored, because a rater who knows which model wrote an answer judges the name, not the text; the vote goes
// to the same ratings store the leaderboard (Bradley-Terry) is computed from.

import { api } from "./api.js";
import { el, showError } from "./widgets.js";

const $ = (id) => document.getElementById(id);
let pair = null; // the answers on screen, until voted on

function number(value, digits) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "–";
}

async function loadBoard() {
  const body = $("board").tBodies[0];
  try {
    const board = await api("/v1/leaderboard");
    const rows = [...(board.generators || [])].sort((a, b) => b.score - a.score);
    body.replaceChildren(
      ...rows.map((g, i) =>
        el(
          "tr",
          { "data-generator": g.name },
          el("td", { text: String(i + 1) }),
          el("th", { scope: "row", text: g.name }),
          el("td", { text: number(g.score, 2) }),
          el("td", { text: `${number(g.low, 2)} to ${number(g.high, 2)}` }),
          el("td", { text: typeof g.win_probability === "number" ? `${(100 * g.win_probability).toFixed(0)}%` : "–" }),
          el("td", { "data-field": "n", text: String(g.n ?? "") }),
          el("td", { text: String(g.wins ?? "") }),
          el("td", { text: String(g.losses ?? "") }),
          el("td", { text: String(g.ties ?? "") }),
        ),
      ),
    );
    const count = board.comparisons ?? 0;
    $("board-caption").textContent = count
      ? `${count} comparison${count === 1 ? "" : "s"} so far; score is the Bradley–Terry strength (higher is better).`
      : "No comparisons yet: vote above to start the leaderboard.";
    $("board").dataset.comparisons = String(count);
    $("board-status").replaceChildren();
  } catch (err) {
    showError($("board-status"), err);
  }
}

function setVoting(enabled) {
  for (const button of document.querySelectorAll(".votes button")) button.disabled = !enabled;
}

async function requestPair(event) {
  event.preventDefault();
  const data = new FormData(event.target);
  const submit = $("pair-submit");
  submit.disabled = true;
  $("pair-status").replaceChildren(el("p", { text: "Asking two models…" }));
  try {
    pair = await api("/v1/arena/pair", {
      method: "POST",
      json: { prompt: data.get("prompt"), max_tokens: Number(data.get("max_tokens")) },
    });
    $("left-text").textContent = pair.left.text; // model output: text only, never HTML
    $("right-text").textContent = pair.right.text;
    $("left-model").textContent = "";
    $("right-model").textContent = "";
    $("vote-status").replaceChildren();
    $("duel").hidden = false;
    setVoting(true);
    $("pair-status").replaceChildren();
    document.querySelector('.votes button[data-choice="left"]').focus();
  } catch (err) {
    showError($("pair-status"), err);
  } finally {
    submit.disabled = false;
  }
}

async function vote(choice) {
  if (!pair) return;
  setVoting(false);
  $("vote-status").replaceChildren(el("p", { text: "Saving your vote…" }));
  try {
    const saved = await api("/v1/arena/vote", {
      method: "POST",
      json: { left_sample_id: pair.left.sample_id, right_sample_id: pair.right.sample_id, choice },
    });
    $("left-model").textContent = `A was ${saved.left_model}`;
    $("right-model").textContent = `B was ${saved.right_model}`;
    const said = { left: "A is better", right: "B is better", tie: "a tie" }[choice];
    $("vote-status").replaceChildren(el("p", { role: "status", text: `Vote saved (#${saved.id}): ${said}.` }));
    pair = null;
    await loadBoard();
  } catch (err) {
    showError($("vote-status"), err);
    setVoting(true); // nothing was stored: let the person try again
  }
}

$("pair-form").addEventListener("submit", requestPair);
for (const button of document.querySelectorAll(".votes button")) {
  button.addEventListener("click", () => vote(button.dataset.choice));
}
loadBoard().then(() => {
  document.body.dataset.ready = "true";
});
