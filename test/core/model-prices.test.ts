import assert from "node:assert/strict";
import { test } from "node:test";
import { costUsd, priceOf } from "../../src/core/model.ts";

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
