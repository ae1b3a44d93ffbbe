// The messages of the chat page as DOM nodes. Model output and server messages are only ever set as text.

// Hazard names by code ("S9": "indiscriminate weapons"), filled into the page by the service.
const HAZARDS = JSON.parse(document.getElementById("hazard-categories").textContent);

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function userMessage(text) {
  const item = element("li", "msg user");
  item.append(element("div", "bubble", text));
  return item;
}

// What the page keeps of a `done` event (a ChatResponse) to show the answer again after a reload.
export function assistantRecord(done, revised) {
  return {
    role: "assistant",
    answer: done.answer,
    messageId: done.message_id,
    sources: done.sources,
    refused: done.safety.refused,
    refusal: done.safety.refused ? refusalLabel(done.safety) : "",
    revised,
  };
}

// A refusal's label and hazard categories, from the verdict that refused.
function refusalLabel(safety) {
  const request = safety.request.safe === false;
  const verdict = request ? safety.request : safety.response;
  const categories = (verdict?.categories || []).map((code) => (HAZARDS[code] ? `${code} ${HAZARDS[code]}` : code));
  const label = request ? "Request refused" : "Answer withheld";
  return categories.length ? `${label} · ${categories.join(", ")}` : label;
}

// One assistant message (`item`): streamed into, then finished with its record, or failed.
export class AssistantView {
  constructor(record) {
    this.item = element("li", "msg assistant");
    this.bubble = element("div", "bubble");
    this.text = element("div", "answer");
    this.bubble.append(this.text);
    this.item.append(this.bubble);
    this.streamed = "";
    if (record) this.finish(record);
    else {
      this.item.dataset.state = "waiting";
      this.text.append(element("span", "typing", "Thinking"));
    }
  }

  append(text) {
    this.item.dataset.state = "streaming";
    this.streamed += text;
    this.text.textContent = this.streamed;
  }

  // Everything shown so far is withdrawn: an empty replacement means a new attempt streams next.
  replace(replacement) {
    this.item.dataset.state = "streaming";
    this.streamed = replacement;
    if (replacement) this.text.textContent = replacement;
    else this.text.replaceChildren(element("span", "typing", "Checking the sources again"));
  }

  finish(record) {
    this.item.dataset.state = "done";
    const anchorPrefix = `src-${record.messageId}`;
    renderAnswerText(this.text, record.answer, record.sources, anchorPrefix);
    if (record.refused) {
      this.item.classList.add("refusal");
      this.bubble.prepend(element("div", "badge refusal-badge", record.refusal));
    } else if (record.revised) {
      this.bubble.append(element("p", "note", "Revised while checking it against the sources."));
    }
    if (record.sources.length) this.bubble.append(renderSources(record.sources, anchorPrefix));
  }

  fail(failure) {
    this.item.dataset.state = "failed";
    const box = element("div", "error-box");
    box.setAttribute("role", "alert");
    box.append(element("strong", "", failure.title));
    if (failure.detail) box.append(element("p", "", failure.detail));
    if (this.streamed) this.text.textContent = this.streamed;
    else this.text.remove();
    this.bubble.append(box);
  }
}

// The answer's text with each [n] that names a source as a link to that source's card.
function renderAnswerText(container, text, sources, anchorPrefix) {
  const known = new Set(sources.map((s) => String(s.index)));
  container.replaceChildren();
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    if (!known.has(match[1])) continue;
    container.append(text.slice(last, match.index));
    const cite = element("a", "cite", match[0]);
    cite.href = `#${anchorPrefix}-${match[1]}`;
    container.append(cite);
    last = match.index + match[0].length;
  }
  container.append(text.slice(last));
}

function renderSources(sources, anchorPrefix) {
  const section = element("section", "sources");
  section.append(element("h3", "sources-title", sources.length === 1 ? "Source" : `${sources.length} sources`));
  const list = element("ol", "source-list");
  for (const source of sources) {
    const card = element("li", "source");
    card.id = `${anchorPrefix}-${source.index}`;
    const head = element("div", "source-head");
    head.append(element("span", "source-index", `[${source.index}]`), element("span", "source-title", source.title));
    const details = element("details", "source-snippet");
    details.append(element("summary", "source-citation", source.citation || source.source));
    details.append(element("p", "", source.snippet));
    card.append(head, details);
    list.append(card);
  }
  section.append(list);
  return section;
}
