import assert from "node:assert/strict";
import { test } from "node:test";
import { isConnectionLost } from "../src/db/database.ts";
import { NotFoundError } from "../src/errors.ts";
import { failureWords } from "../src/slack/words.ts";

const coded = (message: string, code: string) => Object.assign(new Error(message), { code });

test("a database that is away is told apart from a wrong statement or a bug", () => {
  for (const lost of [
    coded("connect ECONNREFUSED 127.0.0.1:5432", "ECONNREFUSED"),
    coded("read ECONNRESET", "ECONNRESET"),
    coded("terminating connection due to administrator command", "57P01"),
    coded("the database system is starting up", "57P03"),
    coded("connection failure", "08006"),
    new Error("Connection terminated unexpectedly"),
    new Error("Client has encountered a connection error and is not queryable"),
    new Error("timeout exceeded when trying to connect"),
  ])
    assert.equal(isConnectionLost(lost), true, lost.message);
  for (const other of [
    coded("duplicate key value violates unique constraint", "23505"),
    coded("canceling statement due to statement timeout", "57014"),
    new TypeError("Cannot read properties of undefined (reading 'id')"),
    undefined,
    "a string",
  ])
    assert.equal(isConnectionLost(other), false, String(other));
});

test("a person whose click failed is told that nothing was done, and what to do", () => {
  assert.equal(
    failureWords(new NotFoundError("that approval no longer exists")),
    "Nothing was done: that approval no longer exists.",
  );
  assert.match(
    failureWords(coded("read ECONNRESET", "ECONNRESET")),
    /could not reach its database/,
  );
  const bug = failureWords(new TypeError("x is undefined"));
  assert.match(bug, /^Something went wrong on Baton's side, so nothing was done/);
  assert.doesNotMatch(bug, /undefined/, "a bug's own words stay in the log");
});
