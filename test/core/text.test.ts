import assert from "node:assert/strict";
import { test } from "node:test";
import { cleanJsonText, cleanText, cutPoint, headOf, shorten } from "../../src/core/text.ts";

test("cleanText drops NULs and replaces lone surrogates, keeping whole emoji", () => {
  assert.equal(cleanText("a\u0000b"), "ab");
  assert.equal(cleanText("x\ud83d y \udce6"), "x\ufffd y \ufffd");
  assert.equal(cleanText("ok 📦"), "ok 📦");
});

test("cleanJsonText cleans what the escapes would parse to, and leaves the rest as sent", () => {
  assert.deepEqual(JSON.parse(cleanJsonText('{"id":"1042\\u0000"}')), { id: "1042" });
  assert.deepEqual(JSON.parse(cleanJsonText('{"a":"\\ud83d!","b":"\\udce6"}')), {
    a: "\ufffd!",
    b: "\ufffd",
  });
  // An escaped backslash before "u0000" is text, and a whole pair is an emoji: both kept.
  assert.equal(cleanJsonText('{"p":"C:\\\\u0000"}'), '{"p":"C:\\\\u0000"}');
  assert.equal(cleanJsonText('"\\\\\\u0000"'), '"\\\\"');
  assert.deepEqual(JSON.parse(cleanJsonText('"\\ud83d\\udce6"')), "📦");
  assert.equal(cleanJsonText('{"order_id": 10'), '{"order_id": 10', "unparsable text is kept");
  assert.equal(cleanJsonText('{"a":"\u0000"}'), '{"a":""}');
});

test("cuts never split an emoji", () => {
  const text = "ab📦cd";
  assert.equal(cutPoint(text, 3), 2, "between the halves: moved back");
  assert.equal(cutPoint(text, 4), 4);
  assert.equal(cutPoint(text, 0), 0);
  assert.equal(headOf(text, 3), "ab");
  assert.equal(headOf(text, 10), text);
  assert.equal(shorten(text, 4), "ab…");
  assert.equal(shorten(text, 5), "ab📦…");
  assert.equal(shorten(text, 6), text);
  assert.equal(shorten(text, 0), "");
});
