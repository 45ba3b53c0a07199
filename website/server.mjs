// The same call from a server route (for example on Vercel): the door's URL comes from
// SIGNUP_WEBHOOK_URL (written by each deploy to inventories/<env>/artifacts/website.env).
// Pass the form fill's idempotencyKey from the browser when there is one, so a retried
// form post reaches the same run.
import { randomUUID } from "node:crypto";

import { submitSignup } from "./signup.mjs";

export function signupFromServer(fields, options = {}) {
  const url = process.env.SIGNUP_WEBHOOK_URL;
  if (!url) {
    throw new Error("SIGNUP_WEBHOOK_URL is not set");
  }
  return submitSignup(url, fields, { idempotencyKey: randomUUID(), ...options });
}
