import assert from "node:assert/strict";
import { test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { ConfigError } from "../../src/errors.ts";

const MINIMAL = `agents:
  - id: helper
    name: Helper
    icon: ":wave:"
    instructions: Answer briefly.
`;

function errorOf(text: string): string {
  try {
    parseAgentsFile(text, "agents.yml");
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message;
  }
  assert.fail("expected a ConfigError");
}

test("an alias to an anchor that does not exist is reported at the alias's line", () => {
  // Line 7: a typo in an alias ("*lead" for "*leads").
  const text = `${MINIMAL}policies:\n  supervisors: *lead\n`;
  assert.match(errorOf(text), /^agents\.yml:7:16 .*lead/m);
});

test("an approval condition with two comparators is refused, not half applied", () => {
  // Meant as "from 100 up"; gateFor reads greater_than alone, so a 500 USD refund would run unapproved.
  const text = `${MINIMAL}policies:
  approvals:
    - id: refunds
      tool: issue_refund
      when: { argument: amount_usd, greater_than: 1000, at_least: 100 }
      approvers: { users: [U0LEAD] }
`;
  assert.match(errorOf(text), /^agents\.yml:10:13 policies\.approvals\[0\]\.when: /m);
});
