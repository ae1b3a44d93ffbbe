// The chat page: streams POST /v1/chat/stream, shows sources and refusals, keeps the conversation.
//
// Stream events (api/routes/chat.py): `token` {text} appends; `retract` {replacement} replaces everything shown
// so far (the agent regenerates an unsupported answer, quotes its evidence instead, or the output check
// withholds it); one `done` carries the authoritative answer, sources and safety verdicts; `error` {detail, code}
// ends a failed stream.
import { AssistantView, assistantRecord, userMessage } from "./render.js";
import { readEvents } from "./sse.js";

const KEY_ITEM = "aligned-rag.api-key"; // sessionStorage: the key lives as long as the tab
const CONVERSATION_ITEM = "aligned-rag.conversation"; // localStorage: a reload continues the thread
const KEPT_MESSAGES = 200; // the page's copy of the transcript; the service bounds its own history
const READY_POLL_MS = 3000;

// Titles by the service's error codes (api/errors.py), then by HTTP status for anything else.
const ERROR_TITLES = {
  unauthorized: "An API key is needed",
  forbidden: "Not allowed from this machine",
  rate_limited: "Too many requests",
  overloaded: "The service is busy",
  not_ready: "The models are still loading",
  body_too_large: "The message is too large",
  invalid_request: "The message was not accepted",
  malformed_json: "The request was malformed",
  thread_not_found: "This conversation is not available",
  generation_timeout: "The answer took too long",
  generation_failed: "The model failed to answer",
  knowledge_base_unavailable: "The knowledge base is unavailable",
};
const STATUS_TITLES = { 413: "The message is too large", 429: "Too many requests", 503: "The service is unavailable" };

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), messages: $("messages"), empty: $("empty"), composer: $("composer"), input: $("input"),
  send: $("send"), newChat: $("new-chat"), keyButton: $("key-button"), keyPanel: $("key-panel"),
  keyForm: $("key-form"), keyInput: $("key-input"), keyMessage: $("key-message"),
  keyForget: $("key-forget"),
};

let conversation = loadConversation(); // {threadId, messages: [{role: "user", text} | assistant record]}
let inFlight = null; // the AbortController of the turn being streamed

// ---- storage -------------------------------------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

function loadConversation() {
  try {
    const stored = JSON.parse(localStorage.getItem(CONVERSATION_ITEM));
    if (stored && Array.isArray(stored.messages)) return stored;
  } catch { /* unreadable: start afresh */ }
  return { threadId: null, messages: [] };
}

function saveConversation() {
  conversation.messages = conversation.messages.slice(-KEPT_MESSAGES);
  localStorage.setItem(CONVERSATION_ITEM, JSON.stringify(conversation));
}

function resetConversation() {
  conversation = { threadId: null, messages: [] };
  saveConversation();
  ui.messages.replaceChildren();
  ui.empty.hidden = false;
}

// ---- requests ------------------------------------------------------------------------------------------

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// {status, code, title, detail} of a failed response, in words a user can act on.
async function describeFailure(response) {
  let body = {};
  try { body = await response.json(); } catch { /* not JSON (a proxy's page): the status says enough */ }
  const code = body.code || `http_${response.status}`;
  let detail = body.detail || response.statusText || "";
  const wait = response.headers.get("Retry-After");
  if (wait) detail += ` Try again in ${wait} s.`;
  const title = ERROR_TITLES[code] || STATUS_TITLES[response.status] || `Request failed (${response.status})`;
  return { status: response.status, code, title, detail };
}

// ---- service status and the key -----------------------------------------------------------------------

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function askForKey(problem) {
  setStatus("locked", "API key needed");
  ui.keyPanel.hidden = false;
  ui.keyMessage.textContent = problem || "This service needs an API key: enter yours to chat.";
  ui.keyMessage.hidden = false;
  ui.keyInput.focus();
}

// Whether the service takes this tab's key (or needs none: development mode), and whether its models are up.
async function checkService() {
  setStatus("checking", "Connecting…");
  let models;
  try {
    models = await fetch("/v1/models", { headers: authHeaders() });
  } catch {
    setStatus("offline", "Service unreachable");
    return;
  }
  if (models.status === 401) {
    askForKey(apiKey() ? "That key was not accepted. Check it and enter it again." : "");
    return;
  }
  if (!models.ok) {
    const failure = await describeFailure(models);
    setStatus("error", failure.title);
    return;
  }
  ui.keyPanel.hidden = true;
  ui.keyMessage.hidden = true;
  const model = (await models.json()).data[0]?.id || "model";
  const mode = apiKey() ? "" : " · no key needed (development mode)";
  const ready = await fetch("/readyz").then((r) => r.json()).catch(() => ({ status: "unknown" }));
  if (ready.status === "loading") {
    setStatus("checking", "Loading models…");
    setTimeout(checkService, READY_POLL_MS);
  } else if (ready.status === "ready") {
    setStatus("ready", `Ready · ${model}${mode}`);
  } else {
    setStatus("error", ready.detail ? `Models failed to load: ${ready.detail}` : "Service not ready");
  }
}

// ---- the transcript ------------------------------------------------------------------------------------

function addItem(node) {
  ui.empty.hidden = true;
  ui.messages.append(node);
  node.scrollIntoView({ block: "end", behavior: "smooth" });
}

function renderConversation() {
  ui.messages.replaceChildren();
  ui.empty.hidden = conversation.messages.length > 0;
  for (const message of conversation.messages) {
    addItem(message.role === "user" ? userMessage(message.text) : new AssistantView(message).item);
  }
}

// ---- a turn --------------------------------------------------------------------------------------------

function setBusy(busy) {
  ui.send.textContent = busy ? "Stop" : "Send";
  ui.send.classList.toggle("stop", busy);
  ui.input.disabled = busy;
  if (!busy) ui.input.focus();
}

async function sendMessage(text) {
  addItem(userMessage(text));
  const view = new AssistantView();
  addItem(view.item);
  inFlight = new AbortController();
  setBusy(true);
  try {
    await streamTurn(text, view, inFlight.signal);
  } catch (error) {
    if (error.name === "AbortError") view.fail({ title: "Stopped", detail: "This turn was not kept." });
    else view.fail({ title: "The connection failed", detail: String(error.message || error) });
  } finally {
    inFlight = null;
    setBusy(false);
  }
}

async function streamTurn(text, view, signal) {
  const body = { message: text };
  if (conversation.threadId) body.thread_id = conversation.threadId;
  const response = await fetch("/v1/chat/stream", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders() },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) {
    const failure = await describeFailure(response);
    ui.input.value = text; // nothing was kept: the message is ready to send again
    if (failure.code === "unauthorized") askForKey(apiKey() ? "That key was not accepted." : "");
    if (failure.code === "thread_not_found") {
      conversation.threadId = null; // another key's (or a forgotten) thread: the next message starts anew
      saveConversation();
      failure.detail = "It belongs to another key or no longer exists; send again to start a new conversation.";
    }
    view.fail(failure);
    return;
  }
  let revised = false;
  for await (const { event, data } of readEvents(response.body)) {
    if (event === "token") view.append(data.text);
    else if (event === "retract") {
      revised = true;
      view.replace(data.replacement);
    } else if (event === "done") {
      const record = assistantRecord(data, revised);
      view.finish(record);
      conversation.threadId = data.thread_id;
      conversation.messages.push({ role: "user", text }, record);
      saveConversation();
      return;
    } else if (event === "error") {
      view.fail({ title: ERROR_TITLES[data.code] || "The answer failed", detail: data.detail });
      return;
    }
  }
  view.fail({ title: "The answer was cut off", detail: "The connection closed before the answer was complete." });
}

// ---- wiring --------------------------------------------------------------------------------------------

function fitInput() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 200)}px`;
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  if (inFlight) {
    inFlight.abort();
    return;
  }
  const text = ui.input.value.trim();
  if (!text) return;
  ui.input.value = "";
  fitInput();
  sendMessage(text);
});

ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.input.addEventListener("input", fitInput);

ui.newChat.addEventListener("click", () => {
  if (inFlight) inFlight.abort();
  resetConversation();
  ui.input.focus();
});

ui.keyButton.addEventListener("click", () => {
  ui.keyPanel.hidden = !ui.keyPanel.hidden;
  if (!ui.keyPanel.hidden) ui.keyInput.focus();
});

ui.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = ui.keyInput.value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY_ITEM, key);
  ui.keyInput.value = "";
  checkService();
});

ui.keyForget.addEventListener("click", () => {
  sessionStorage.removeItem(KEY_ITEM);
  checkService();
});

renderConversation();
checkService();
