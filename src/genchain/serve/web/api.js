// The page's only door to genchain's HTTP API. Calls are same-origin and send the session cookie the server set
// when it served the page, so the page never holds an API key. Every failure becomes an ApiError whose message
// is the server's own words (OpenAI-style {"error": {"message"}} or FastAPI's {"detail"}), because the person at
// the page needs to know what to change, not a status code.

export class ApiError extends Error {
  constructor(message, status = 0, retryAfter = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

function detailText(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
  }
  return null;
}

async function errorFrom(response) {
  let message = `the server answered ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    message = body?.error?.message || detailText(body?.detail) || message;
  } catch {
    // Not JSON (a proxy's HTML page, say): the status line is all there is.
  }
  const retryAfter = response.headers.get("Retry-After");
  if (response.status === 429 && retryAfter) message += ` (try again in ${retryAfter} s)`;
  if (response.status === 401) message += " (reload the page to start a new session)";
  return new ApiError(message, response.status, retryAfter);
}

async function send(path, { method = "GET", json, form, signal } = {}) {
  const init = { method, credentials: "same-origin", signal, headers: {} };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (form !== undefined) {
    init.body = form; // the browser writes the multipart boundary itself
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`cannot reach the server: ${err.message}`);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

/** JSON in, JSON out; throws ApiError with the server's message on any non-2xx answer. */
export async function api(path, options = {}) {
  const response = await send(path, options);
  return response.json();
}

/**
 * POST /v1/completions with stream: true and hand each piece of text to onText as it arrives.
 *
 * Server-sent events are read with fetch + ReadableStream rather than EventSource, because EventSource can only
 * GET and cannot carry a request body. Resolves with the `genchain` block of the last chunk (artefact ids,
 * watermark) and the finish reason; rejects with AbortError when `signal` fires, or ApiError when the server
 * reports an error mid-stream or the stream ends without its [DONE] line.
 */
export async function streamCompletion(request, { signal, onText }) {
  const response = await send("/v1/completions", { method: "POST", json: { ...request, stream: true }, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let extra = null;
  let finishReason = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new ApiError("the stream ended before the server finished (connection lost?)");
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue; // a comment or keep-alive line
      if (data === "[DONE]") {
        reader.cancel().catch(() => {});
        return { genchain: extra, finishReason };
      }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(chunk.error.message || "the server reported an error mid-stream");
      for (const choice of chunk.choices || []) {
        if (choice.text) onText(choice.text);
        if (choice.finish_reason) finishReason = choice.finish_reason;
      }
      if (chunk.genchain) extra = chunk.genchain;
    }
  }
}
