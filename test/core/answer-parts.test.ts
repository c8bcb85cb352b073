import assert from "node:assert/strict";
import { test } from "node:test";
import { ANSWER_PART_MAX, answerParts } from "../../src/core/answer-parts.ts";

test("a short answer is one message", () => {
  assert.deepEqual(answerParts("  Your order is on the way.  "), ["Your order is on the way."]);
});

test("a long answer breaks at paragraphs, else lines, else words, each part under the limit", () => {
  const paragraph = `${"word ".repeat(300).trim()}.`;
  const text = Array.from({ length: 10 }, () => paragraph).join("\n\n");
  const parts = answerParts(text);
  assert.ok(parts.length > 1);
  for (const part of parts) {
    assert.ok(part.length <= ANSWER_PART_MAX);
    assert.ok(part.endsWith("."), "broken between paragraphs");
  }
  assert.equal(parts.join("\n\n"), text);

  const oneLine = "word ".repeat(3_000).trim();
  const words = answerParts(oneLine);
  assert.equal(words.join(" "), oneLine, "broken between words, none lost");
});

test("one endless word is cut, never between the halves of an emoji", () => {
  const text = `${"a".repeat(ANSWER_PART_MAX - 1)}😀${"b".repeat(100)}`;
  const [first, second] = answerParts(text);
  assert.equal(first, "a".repeat(ANSWER_PART_MAX - 1));
  assert.equal(second, `😀${"b".repeat(100)}`);
});

test("past eight messages, the last carries the rest", () => {
  const text = "line\n".repeat(20_000);
  const parts = answerParts(text);
  assert.equal(parts.length, 8);
  assert.ok((parts.at(-1)?.length ?? 0) > ANSWER_PART_MAX);
});
