// TAG web page: submits jobs to the REST API, follows their server-sent events, plays and downloads results.
// The API key (when the server wants one) travels as a header, so audio and events are fetched with fetch()
// rather than <audio src> or EventSource, which cannot send headers.
"use strict";

const KEY_STORAGE = "tag.apiKey";
const HISTORY_STORAGE = "tag.history";
const HISTORY_SIZE = 5;
const NO_PROMPT = "(no description)";  // a continued clip needs none
const FINAL_STATES = ["done", "failed", "cancelled", "expired"];
const $ = (id) => document.getElementById(id);
const state = { backends: new Map(), current: null, history: [], blobUrls: new Map(),
  audioPromptRole: null, audioPrompts: new Map(), running: null };

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function authHeaders(extra = {}) {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { ...extra, "X-API-Key": key } : extra;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers || {}) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message || message; } catch (_) { /* not our JSON */ }
    if (response.status === 401) {
      $("key-box").hidden = false;
      $("key-box").open = true;
    }
    throw new ApiError(response.status, message);
  }
  return response;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// --- backends and their options ---------------------------------------------------------------------------
async function loadBackends() {
  const health = await (await fetch("/v1/health")).json();
  if (health.auth_required) $("key-box").hidden = false;
  const list = await (await api("/v1/backends")).json();
  const select = $("backend");
  select.replaceChildren();
  for (const backend of list.backends) {
    state.backends.set(backend.name, backend);
    select.append(new Option(backend.name, backend.name, false, backend.name === list.default));
  }
  if (!list.backends.length) showError("This server offers no backends.");
  else if (health.status === "degraded") showError(`This server cannot serve jobs now: ${health.problems.join("; ")}.`);
  onBackendChange();
}

function onBackendChange() {
  const backend = state.backends.get($("backend").value);
  if (!backend) return;
  const d = $("duration");
  d.min = backend.durations.min;
  d.max = backend.durations.max;
  if (!d.value || +d.value > backend.durations.max || +d.value < backend.durations.min) d.value = backend.durations.default;
  // Speech lasts as long as its text: the field is then only the longest clip accepted.
  $("duration-label").textContent = backend.variable_length ? "At most (s)" : "Duration (s)";
  $("backend-info").textContent = `${backend.description} ${backend.durations.min}–${backend.durations.max} s, ` +
    `${backend.sample_rate / 1000} kHz.`;
  // Long-text options (lyrics...) get a text area in view; the rest go in the folded options box.
  const longText = backend.options.filter((option) => option.multiline);
  const short = backend.options.filter((option) => !option.multiline);
  $("text-options").replaceChildren(...longText.map(optionField));
  $("options").replaceChildren(...short.map(optionField));
  $("options-box").hidden = short.length === 0;
  showAudioPromptField(backend.capabilities);
}

// --- audio prompt -------------------------------------------------------------------------------------------
// Shown only for backends that take one. What the clip is for depends on the backend's role: a "continuation"
// backend goes on from it (so it must be shorter than the duration), a "voice" backend speaks with its voice.
const AUDIO_PROMPT_TEXT = {
  continuation: {
    label: "Audio to continue (optional)",
    hint: (max) => `The sound goes on from this clip, which must be shorter than the duration (at most ${max} s). ` +
      "With a clip, the description may stay empty.",
  },
  voice: {
    label: "Voice sample (optional)",
    hint: (max) => `A recording of one speaker, up to ${max} s: the speech takes this voice and says the text above.`,
  },
};

function showAudioPromptField(capabilities) {
  const role = capabilities.audio_prompt ? capabilities.audio_prompt_role : null;
  if (role !== state.audioPromptRole) clearAudioPrompt();  // a clip chosen for one role is no answer to another
  state.audioPromptRole = role;
  $("audio-prompt-box").hidden = !role;
  if (!role) return;
  const text = AUDIO_PROMPT_TEXT[role] || { label: "Audio prompt (optional)", hint: (max) => `Up to ${max} s.` };
  $("audio-prompt-label").textContent = text.label;
  $("audio-prompt-hint").textContent = text.hint(capabilities.max_audio_prompt);
}

function clearAudioPrompt() {
  $("audio-prompt").value = "";
  onAudioPromptChange();
}

function onAudioPromptChange() {
  const chosen = $("audio-prompt").files.length > 0;
  $("audio-prompt-clear").hidden = !chosen;
  // Only a clip to continue can stand in for the description (the server accepts an empty prompt then).
  $("prompt").required = !(chosen && state.audioPromptRole === "continuation");
}

function chosenAudioPrompt() {
  const file = $("audio-prompt-box").hidden ? null : $("audio-prompt").files[0];
  // A backend offering several roles lets the request pick one with its audio_role option (e.g. variation).
  const picked = $("options").querySelector("[data-option=audio_role]");
  return file ? { file, role: picked ? picked.value : state.audioPromptRole } : null;
}

function optionField(option) {
  const label = document.createElement("label");
  label.textContent = option.name;
  label.title = option.help;
  let input;
  if (option.multiline) {
    input = document.createElement("textarea");
    input.rows = 6;
    input.placeholder = option.help;
  } else if (option.type === "choice") {
    input = document.createElement("select");
    for (const choice of option.choices) input.append(new Option(choice, choice, false, choice === option.default));
  } else if (option.type === "bool") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = Boolean(option.default);
  } else {
    input = document.createElement("input");
    input.type = option.type === "int" || option.type === "float" ? "number" : "text";
    if (option.type === "int") input.step = "1";
    if (option.type === "float") input.step = "any";
    if (option.minimum !== null) input.min = option.minimum;
    if (option.maximum !== null) input.max = option.maximum;
    input.placeholder = String(option.default ?? "");
  }
  input.dataset.option = option.name;
  input.dataset.type = option.type;
  input.dataset.default = JSON.stringify(option.default);
  label.append(input);
  return label;
}

function chosenOptions() {
  const options = {};
  for (const input of $("gen-form").querySelectorAll("[data-option]")) {
    const type = input.dataset.type;
    let value;
    if (type === "bool") value = input.checked;
    else if (input.value === "") continue;
    else value = type === "int" ? parseInt(input.value, 10) : type === "float" ? parseFloat(input.value) : input.value;
    if (JSON.stringify(value) !== input.dataset.default) options[input.dataset.option] = value;
  }
  return options;
}

// --- generating ---------------------------------------------------------------------------------------------
function formRequest() {
  const seed = $("seed").value.trim();
  return {
    prompt: $("prompt").value.trim(),
    duration: parseFloat($("duration").value),
    backend: $("backend").value || null,
    seed: seed === "" ? null : parseInt(seed, 10),
    options: chosenOptions(),
    audioPrompt: chosenAudioPrompt(),
  };
}

// A request with an audio prompt goes as a multipart form to /v1/jobs/upload, any other as JSON to /v1/jobs.
async function submit(request) {
  const { audioPrompt, ...body } = request;
  if (!audioPrompt) {
    const headers = { "Content-Type": "application/json" };
    return api("/v1/jobs", { method: "POST", headers, body: JSON.stringify(body) });
  }
  const form = new FormData();
  form.append("prompt", body.prompt);
  if (Number.isFinite(body.duration)) form.append("duration", String(body.duration));
  if (body.backend) form.append("backend", body.backend);
  if (body.seed !== null) form.append("seed", String(body.seed));
  form.append("options", JSON.stringify(body.options));
  form.append("audio_prompt", audioPrompt.file, audioPrompt.file.name);
  return api("/v1/jobs/upload", { method: "POST", body: form });
}

async function generate(request) {
  showError("");
  setBusy(true);
  showProgress({ state: "queued", stage: "submitting", progress: 0, position: null });
  try {
    const job = await (await submit(request)).json();
    state.running = job;
    $("cancel").hidden = false;
    const final = await follow(job);
    if (final.state !== "done") throw new ApiError(0, final.error ? final.error.message : `job ${final.state}`);
    // The file itself stays in memory only (again/variation reuse it); the job remembers its name and role.
    const used = request.audioPrompt;
    if (used) state.audioPrompts.set(final.id, used);
    await showResult({ ...final, options: request.options,
      audio_prompt: used ? { name: used.file.name, role: used.role } : null });
  } catch (error) {
    showError(error.message);
    $("progress-box").hidden = true;
  } finally {
    state.running = null;
    $("cancel").hidden = true;
    setBusy(false);
  }
}

async function cancelRunning() {
  const job = state.running;
  if (!job) return;
  $("cancel").disabled = true;
  try {
    await api(job.links.status, { method: "DELETE" });  // the event stream then ends with state "cancelled"
  } catch (error) {
    showError(error.message);
  } finally {
    $("cancel").disabled = false;
  }
}

function repeatOf(job, seed) {
  const audioPrompt = job.audio_prompt ? state.audioPrompts.get(job.id) : null;
  if (job.audio_prompt && !audioPrompt) {
    throw new Error(`This sound was made from the audio file “${job.audio_prompt.name}”, which the page no ` +
      "longer holds (it is not kept across reloads): choose it again above and press Generate.");
  }
  return { prompt: job.prompt, duration: job.duration, backend: job.backend, seed, options: job.options || {},
    audioPrompt: audioPrompt || null };
}

// The event stream is what keeps the job alive: the server cancels a job whose last stream hung up and did not
// come back within its grace period (so closing the tab cancels it). A stream that breaks (a proxy cut it, a
// server restarted) is opened again after the delay the server asked for in its `retry:` field.
async function follow(job) {
  showProgress(job);
  const stream = { last: job, retryMs: 1000 };
  for (;;) {
    try {
      await readEvents(job, stream);
    } catch (error) {
      if (error instanceof ApiError) throw error;  // an answer (the job is gone...), not a broken connection
    }
    if (FINAL_STATES.includes(stream.last.state)) return stream.last;
    await new Promise((resolve) => setTimeout(resolve, stream.retryMs));
  }
}

async function readEvents(job, stream) {
  const response = await api(job.links.events, { headers: { Accept: "text/event-stream" } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const lines = buffer.slice(0, end).split("\n");
      buffer = buffer.slice(end + 2);
      const retry = lines.find((l) => l.startsWith("retry: "));
      if (retry) stream.retryMs = Number(retry.slice(7)) || stream.retryMs;
      const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (!data) continue;
      stream.last = JSON.parse(data);
      showProgress(stream.last);
    }
  }
}

function showProgress(job) {
  $("progress-box").hidden = false;
  const pct = Math.round((job.progress || 0) * 100);
  $("progress-bar").style.width = `${job.state === "done" ? 100 : pct}%`;
  let text;
  if (job.state === "queued") text = job.position ? `Queued: position ${job.position}` : "Queued";
  else if (job.state === "running") text = `${job.stage[0].toUpperCase()}${job.stage.slice(1)}… ${pct}%`;
  else if (job.state === "done") text = "Done";
  else text = job.error ? job.error.message : job.state;
  $("status").textContent = text;
}

async function audioUrl(job, format = "wav") {
  const key = `${job.id}.${format}`;
  if (!state.blobUrls.has(key)) {
    const blob = await (await api(job.links.audio[format])).blob();
    state.blobUrls.set(key, URL.createObjectURL(blob));
  }
  return state.blobUrls.get(key);
}

async function showResult(job) {
  state.current = job;
  const player = $("player");
  player.src = await audioUrl(job);
  $("result-prompt").textContent = job.prompt || NO_PROMPT;
  $("result-seed").textContent = job.seed;
  const seconds = job.audio_seconds ?? job.duration;
  const sound = job.channels ? ` · ${job.channels === 2 ? "stereo" : job.channels === 1 ? "mono" : `${job.channels} channels`}` +
    ` ${job.sample_rate / 1000} kHz` : "";
  $("result-meta").textContent = `${job.backend} · ${seconds} s${sound}` + (job.model_id ? ` · ${job.model_id}` : "");
  const used = job.audio_prompt;
  $("result-audio-prompt").textContent = used ? `Audio prompt: ${used.name} (${audioPromptUse(used.role)})` : "";
  $("result-audio-prompt").hidden = !used;
  $("result").hidden = false;
  $("progress-box").hidden = true;
  remember(job);
}

async function download(format) {
  const job = state.current;
  if (!job) return;
  try {
    const link = document.createElement("a");
    link.href = await audioUrl(job, format);
    link.download = `tag-${job.seed}.${format}`;
    link.click();
  } catch (error) {
    showError(error.message);
  }
}

function audioPromptUse(role) {
  return role === "voice" ? "voice sample" : role === "continuation" ? "continued" : role;
}

function setBusy(busy) {
  for (const id of ["generate", "again", "variation"]) $(id).disabled = busy;
}

// --- history ------------------------------------------------------------------------------------------------
function remember(job) {
  state.history = [job, ...state.history.filter((j) => j.id !== job.id)].slice(0, HISTORY_SIZE);
  localStorage.setItem(HISTORY_STORAGE, JSON.stringify(state.history));
  renderHistory();
}

function renderHistory() {
  const list = $("history");
  list.replaceChildren();
  for (const job of state.history) {
    const item = document.createElement("li");
    const expired = job.expires_at && job.expires_at * 1000 < Date.now();
    const from = job.audio_prompt ? `, from ${job.audio_prompt.name}` : "";
    item.textContent = `${job.prompt || NO_PROMPT} (seed ${job.seed}, ${job.duration} s, ${job.backend}${from})`;
    if (expired) item.className = "expired";
    else {
      const play = document.createElement("button");
      play.type = "button";
      play.className = "link";
      play.textContent = "play";
      play.addEventListener("click", () => showResult(job).catch((e) => showError(e.message)));
      item.append(play);
    }
    list.append(item);
  }
  $("history-box").hidden = state.history.length === 0;
}

function loadHistory() {
  try { state.history = JSON.parse(localStorage.getItem(HISTORY_STORAGE) || "[]").slice(0, HISTORY_SIZE); }
  catch (_) { state.history = []; }
  renderHistory();
}

// Again (the same seed) or a variation (seed null: a new random one) of the result on show.
function repeat(seed) {
  if (!state.current) return;
  let request;
  try { request = repeatOf(state.current, seed); } catch (error) { showError(error.message); return; }
  $("seed").value = seed ?? "";
  generate(request);
}

// --- wiring -------------------------------------------------------------------------------------------------
function init() {
  $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    $("key-box").open = false;
    loadBackends().then(() => showError("")).catch((e) => showError(e.message));
  });
  $("backend").addEventListener("change", onBackendChange);
  $("audio-prompt").addEventListener("change", onAudioPromptChange);
  $("audio-prompt-clear").addEventListener("click", () => {
    clearAudioPrompt();
    $("audio-prompt").focus();
  });
  $("gen-form").addEventListener("submit", (event) => {
    event.preventDefault();
    generate(formRequest());
  });
  $("cancel").addEventListener("click", cancelRunning);
  $("again").addEventListener("click", () => repeat(state.current && state.current.seed));
  $("variation").addEventListener("click", () => repeat(null));
  for (const button of document.querySelectorAll("[data-format]")) {
    button.addEventListener("click", () => download(button.dataset.format));
  }
  loadHistory();
  loadBackends().catch((e) => showError(e.message));
}

init();
