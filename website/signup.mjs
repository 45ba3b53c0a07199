// Send one signup to a campaign door (see docs/door.md). The same code
// runs in the browser (form.html) and on a server (server.mjs, Node 18+ fetch).
// One Idempotency-Key per form fill: 429 and 503 are sent again with the same key
// after Retry-After, so a retry never makes a second run. 4xx answers other than 429
// are final: a 422 names the field to fix, a 403 "bot check failed" asks for a new
// Turnstile token (when the edge has the bot check on).

const RETRIED = new Set([429, 503]);

function wait(seconds) {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

function retryAfter(response, fallback) {
  const value = Number(response.headers.get("Retry-After"));
  return Number.isFinite(value) && value >= 0 ? value : fallback;
}

/**
 * POST `fields` to the door at `url`.
 * options: idempotencyKey (required: one per form fill), attempts (default 4),
 * maxWaitSeconds (cap on one Retry-After, default 60), sleep (seconds => Promise),
 * turnstileToken (the Turnstile widget's token, sent as the cf-turnstile-response field;
 * a browser form with the widget inside already has that field).
 * Resolves to {ok: true, flowRunId, attempts} or {ok: false, status, error, field, detail, attempts}.
 */
export async function submitSignup(url, fields, options) {
  const { idempotencyKey, attempts = 4, maxWaitSeconds = 60, sleep = wait, turnstileToken } = options;
  if (!idempotencyKey) {
    throw new Error("submitSignup needs an idempotencyKey (one per form fill)");
  }
  for (let attempt = 1; ; attempt += 1) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": idempotencyKey },
        body: JSON.stringify(
          turnstileToken ? { ...fields, "cf-turnstile-response": turnstileToken } : fields,
        ),
      });
    } catch (error) {
      if (attempt >= attempts) {
        return { ok: false, status: 0, error: `network error: ${error.message}`, attempts: attempt };
      }
      await sleep(Math.min(5, maxWaitSeconds));
      continue;
    }
    const body = await response.json().catch(() => ({}));
    if (response.status === 202) {
      return { ok: true, flowRunId: body.flow_run_id, attempts: attempt };
    }
    if (RETRIED.has(response.status) && attempt < attempts) {
      await sleep(Math.min(retryAfter(response, 5), maxWaitSeconds));
      continue;
    }
    return {
      ok: false,
      status: response.status,
      error: body.error,
      field: body.field,
      detail: body.detail,
      attempts: attempt,
    };
  }
}
