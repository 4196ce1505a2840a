// The try-it page: plain JavaScript against the public API, no framework and no build step.
"use strict";

const MODELS = ["mf", "dense", "lstm"];
const K = 5;
const rated = new Map(); // item_id -> {title, stars}, in the order rated (the LSTM reads it as a session)
let searchTimer = null;
let searchSeq = 0;
let recSeq = 0;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : response.statusText);
  return body;
}

async function search(query) {
  const seq = ++searchSeq;
  const list = $("results");
  if (!query.trim()) { list.replaceChildren(); return; }
  const body = await getJSON(`/items?q=${encodeURIComponent(query)}&limit=8`);
  if (seq !== searchSeq) return; // a newer query was typed meanwhile
  list.replaceChildren(...body.items.map((item) => {
    const buttons = [1, 2, 3, 4, 5].map((stars) =>
      el("button", { type: "button", title: `${stars} stars`, "data-stars": String(stars),
        onclick: () => rate(item, stars) }, "★".repeat(stars)));
    return el("li", { "data-item-id": String(item.item_id) },
      el("div", { class: "title" }, item.title),
      el("div", { class: "meta" }, `${item.genres.join(", ")} · ${item.n_ratings} ratings`),
      el("div", { class: "stars" }, ...buttons));
  }));
  if (!body.items.length) list.replaceChildren(el("li", { class: "hint" }, "No title matches."));
}

function rate(item, stars) {
  rated.delete(item.item_id); // re-rating moves the film to the end of the session
  rated.set(item.item_id, { title: item.title, stars });
  renderRated();
  refresh();
}

function renderRated() {
  $("no-ratings").hidden = rated.size > 0;
  $("rated").replaceChildren(...[...rated].map(([id, info]) => {
    const similar = el("div", { class: "similar", "data-similar-for": String(id) });
    loadSimilar(id, similar);
    return el("li", { "data-item-id": String(id) },
      el("button", { class: "remove", type: "button", title: "Remove",
        onclick: () => { rated.delete(id); renderRated(); refresh(); } }, "×"),
      el("span", { class: "title" }, info.title), " ",
      el("span", { class: "given" }, "★".repeat(info.stars)),
      similar);
  }));
}

async function loadSimilar(id, node) {
  try {
    const body = await getJSON(`/items/${id}/similar?k=3&model=mf`);
    node.textContent = "Similar: " + body.items.map((item) => item.title).join(" · ");
  } catch (error) {
    node.textContent = "";
  }
}

async function refresh() {
  const seq = ++recSeq;
  const section = $("recommendations");
  section.dataset.state = "loading";
  const items = [...rated.keys()];
  const ratings = [...rated.values()].map((info) => info.stars);
  const diversity = Number($("diversity").value);
  await Promise.all(MODELS.map(async (model) => {
    const list = $(`recs-${model}`);
    if (!items.length) { list.replaceChildren(); return; }
    try {
      const body = await getJSON("/recommend", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ items, ratings, model, k: K, explain: true, diversity }),
      });
      if (seq !== recSeq) return;
      list.replaceChildren(...body.items.map((item) => {
        // Only films that really resemble the recommendation (a negative cosine explains nothing).
        const because = (item.because || []).filter((b) => b.similarity > 0).slice(0, 2).map((b) => b.title);
        return el("li", { class: "rec", "data-item-id": String(item.item_id) },
          el("span", { class: "title" }, item.title),
          el("div", { class: "meta" }, `predicted ${item.rating.toFixed(1)} ★ · ${item.genres.join(", ")}`),
          because.length ? el("div", { class: "because" }, `because you liked ${because.join(" and ")}`) : "");
      }));
    } catch (error) {
      if (seq === recSeq) list.replaceChildren(el("li", { class: "error" }, error.message));
    }
  }));
  if (seq === recSeq) section.dataset.state = items.length ? "ready" : "idle";
}

$("search").addEventListener("input", (event) => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => search(event.target.value).catch(() => {}), 150);
});
$("diversity").addEventListener("input", (event) => {
  $("diversity-value").textContent = event.target.value;
  refresh();
});
