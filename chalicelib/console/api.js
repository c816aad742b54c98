// The API client of the console: the envelope, the Bearer key (sessionStorage only), errors as ApiError.
const KEY_ITEM = "data_pipeline_api_key";
// The console is at <root>/console; the API at <root>/api/v0 (root is "" locally, the stage deployed).
export const ROOT = location.pathname.replace(/\/console(\/.*)?$/, "");
export const API_BASE = ROOT + "/api/v0";
export const TASKS = "/data_pipeline/tasks";

let memoryKey = sessionStorage.getItem(KEY_ITEM) || "";

export function getKey() { return memoryKey; }

export function setKey(value) {
  memoryKey = (value || "").trim();
  if (memoryKey) sessionStorage.setItem(KEY_ITEM, memoryKey); else sessionStorage.removeItem(KEY_ITEM);
}

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const error = (body && body.error) || {};
    super((body && body.message) || fallback || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || null;
    this.details = error.details || null;
    this.data = (body && body.data) || null;
  }
}

function headers(json) {
  const out = {};
  if (json) out["Content-Type"] = "application/json";
  if (memoryKey) out.Authorization = `Bearer ${memoryKey}`;
  return out;
}

async function send(method, path, body) {
  try {
    return await fetch(API_BASE + path, { method, headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (exc) {
    throw new ApiError(0, null, `network error: ${exc.message}`);
  }
}

/** The envelope's `data`; an ApiError for anything but success. */
export async function call(method, path, body) {
  const response = await send(method, path, body);
  const text = await response.text();
  let parsed = null;
  try { parsed = JSON.parse(text); } catch { parsed = null; }
  if (!response.ok || !parsed || parsed.success === false) {
    throw new ApiError(response.status, parsed, text.slice(0, 300));
  }
  return parsed.data;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body === undefined ? {} : body);
export const put = (path, body) => call("PUT", path, body);

/** A task file as a Blob (downloads answer outside the envelope). */
export async function getFile(taskId, name) {
  const path = `${TASKS}/${encodeURIComponent(taskId)}/files/${name.split("/").map(encodeURIComponent).join("/")}`;
  const response = await send("GET", path);
  if (!response.ok) {
    const text = await response.text();
    let parsed = null;
    try { parsed = JSON.parse(text); } catch { parsed = null; }
    throw new ApiError(response.status, parsed, text.slice(0, 300));
  }
  return response.blob();
}

export const taskPath = (taskId, rest = "") => `${TASKS}/${encodeURIComponent(taskId)}${rest}`;
