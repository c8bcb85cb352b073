import assert from "node:assert/strict";
import { test } from "node:test";
import { toolCallsInText } from "../src/model/text-tool-calls.ts";

const call = (name: string, args: Record<string, unknown>) => ({
  name,
  arguments: JSON.stringify(args),
});

test("the formats small models write their calls in are read as calls", () => {
  const lookup = { order_id: "1042" };
  const json = JSON.stringify({ name: "lookup_order", arguments: lookup });
  assert.deepEqual(toolCallsInText(json), [call("lookup_order", lookup)]);
  assert.deepEqual(
    toolCallsInText(`<|python_tag|>{"name": "lookup_order", "parameters": {"order_id": "1042"}}`),
    [call("lookup_order", lookup)],
  );
  assert.deepEqual(toolCallsInText(`[TOOL_CALLS] [${json}, ${json}]`), [
    call("lookup_order", lookup),
    call("lookup_order", lookup),
  ]);
  assert.deepEqual(
    toolCallsInText(`<tool_call>\n${json}\n</tool_call>\n<tool_call>${json}</tool_call>`),
    [call("lookup_order", lookup), call("lookup_order", lookup)],
  );
  assert.deepEqual(toolCallsInText(`\`\`\`json\n${json}\n\`\`\``), [call("lookup_order", lookup)]);
});

test("an answer is left an answer: prose, other JSON, a call beside words", () => {
  assert.equal(toolCallsInText("Order 1042 is in the warehouse."), undefined);
  assert.equal(toolCallsInText('{"name": "Dana", "order": "1042"}'), undefined);
  assert.equal(toolCallsInText('{"name": "lookup_order"}'), undefined);
  assert.equal(
    toolCallsInText('I will look it up: {"name": "lookup_order", "arguments": {}}'),
    undefined,
  );
  assert.equal(
    toolCallsInText('<tool_call>{"name": "lookup_order", "arguments": {}}</tool_call> Done!'),
    undefined,
  );
  assert.equal(toolCallsInText("[]"), undefined);
});

test("a tool's definition (a JSON Schema), as a model explaining a tool writes it, is not a call", () => {
  const definition = {
    name: "get_weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  };
  assert.equal(toolCallsInText(JSON.stringify(definition, null, 2)), undefined);
  assert.equal(
    toolCallsInText(`\`\`\`json\n${JSON.stringify({ type: "function", ...definition })}\n\`\`\``),
    undefined,
  );
});
