// Run with Debian's nodejs against a real door: SIGNUP_WEBHOOK_URL (the door),
// SIGNUP_TEST_BODY (a valid signup as JSON), NODE_EXTRA_CA_CERTS (the edge's CA).
// `node --test test/` (molecule verify of roles/nginx_edge runs it on its test host).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { submitSignup } from "../signup.mjs";
import { signupFromServer } from "../server.mjs";

const door = process.env.SIGNUP_WEBHOOK_URL;
const valid = JSON.parse(process.env.SIGNUP_TEST_BODY);

test("a valid signup is accepted, and its key sent again answers with the same run", async () => {
  const key = randomUUID();
  const first = await signupFromServer(valid, { idempotencyKey: key });
  assert.equal(first.ok, true, JSON.stringify(first));
  assert.match(first.flowRunId, /^[0-9a-f-]{36}$/);
  const again = await signupFromServer(valid, { idempotencyKey: key });
  assert.equal(again.flowRunId, first.flowRunId);
});

test("a bad field comes back as 422 naming the field, without a retry", async () => {
  const result = await signupFromServer({ ...valid, first_name: "Ada, see evil.com" });
  assert.deepEqual(
    [result.ok, result.status, result.field, result.attempts],
    [false, 422, "first_name", 1],
    JSON.stringify(result),
  );
});

test("a 429 is read, waited out (Retry-After, capped) and retried with the same key", async () => {
  // Spend this address's door budget with junk until the door answers 429.
  let status = 0;
  for (let i = 0; i < 200 && status !== 429; i += 1) {
    status = (await fetch(door)).status;
  }
  assert.equal(status, 429, "the door never answered 429");
  const waits = [];
  const sleep = (seconds) => {
    waits.push(seconds);
    return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  };
  const result = await submitSignup(door, valid, {
    idempotencyKey: randomUUID(),
    attempts: 6,
    maxWaitSeconds: 3,
    sleep,
  });
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.ok(result.attempts >= 2, JSON.stringify(result));
  assert.deepEqual(waits, Array(result.attempts - 1).fill(3));
});
