import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ANSWER_PART_MAX, answerParts } from "../../src/core/answer-parts.ts";
import { costUsd, priceOf } from "../../src/core/model.ts";
import { cleanJsonText, cleanText, cutPoint, headOf, shorten } from "../../src/core/text.ts";

// Text cut and cleaned for Slack and Postgres, an answer split into messages, and what a
// model's reply costs. One suite per former test file.

describe("answer-parts", async () => {
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
});

describe("model-prices", async () => {
  const usage = { promptTokens: 1_000_000, completionTokens: 500_000 };

  test("the agents file's prices price a model the built-in list does not, and come first", () => {
    const prices = {
      "llama3.1": { input_per_million: 0.2, output_per_million: 0.6 },
      "gpt-4o-mini": { input_per_million: 1, output_per_million: 2 },
    };
    assert.equal(costUsd("llama3.1", usage), 0);
    assert.equal(costUsd("llama3.1", usage, prices), 0.2 + 0.3);
    assert.equal(costUsd("gpt-4o-mini", usage, prices), 1 + 1);
    assert.equal(costUsd("gpt-4o-mini-2024-07-18", usage), 0.45);
  });

  test("a reply under another model name costs what the agent's configured model does", () => {
    const prices = { "llama3.1": { input_per_million: 0.2, output_per_million: 0.6 } };
    assert.equal(costUsd("llama3.1:8b-instruct", usage, prices, "llama3.1"), 0.2 + 0.3);
  });

  test("a model named like an object's own property has no price", () => {
    assert.equal(priceOf("constructor"), undefined);
    assert.equal(priceOf("toString", {}), undefined);
  });
});

describe("text", async () => {
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
});
