import assert from "node:assert/strict";
import { test } from "node:test";
import { parseAgentsFile } from "../../src/config/agents-file.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { ConfigError } from "../../src/errors.ts";

const MINIMAL = `agents:
  - id: helper
    name: Helper
    icon: ":wave:"
    instructions: Answer briefly.
`;

function errorOf(text: string): string {
  return configErrorOf(() => parseAgentsFile(text, "agents.yml"));
}

function configErrorOf(parse: () => unknown): string {
  try {
    parse();
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

/** A file of one billing agent and the given `policies.approvals` entries, checked against the demo tools. */
function withPolicies(policies: string, extra = ""): string {
  return configErrorOf(() =>
    parseAgentsFile(billingFile(policies, extra), "agents.yml", demoTools),
  );
}

function billingFile(policies: string, extra = ""): string {
  return `agents:
  - id: billing
    name: Billing
    icon: ":credit_card:"
    instructions: Refund what was paid.
    tools: [lookup_order, issue_refund]
policies:
  approvals:
${policies}${extra}`;
}

const policy = (id: string, tool: string, when?: string) =>
  `    - id: ${id}\n      tool: ${tool}\n${when ? `      when: ${when}\n` : ""}      approvers: { users: [U0LEAD] }\n`;

test("a condition on an argument the tool does not have is refused, naming its arguments", () => {
  // Line 11: `amount` for `amount_usd`; the gate would find no such argument and never ask anyone.
  const message = withPolicies(
    policy("refunds", "issue_refund", "{ argument: amount, greater_than: 100 }"),
  );
  assert.match(
    message,
    /^agents\.yml:11:\d+ policies\.approvals\[0\]\.when\.argument: "issue_refund" has no argument "amount"; its arguments are order_id, amount_usd, reason$/m,
  );
});

test("a numeric comparison on a text argument, and equals of the wrong type, are refused", () => {
  const message = withPolicies(
    policy("big", "issue_refund", "{ argument: reason, greater_than: 100 }") +
      policy("one-order", "issue_refund", "{ argument: order_id, equals: 1077 }") +
      policy("exact", "issue_refund", '{ argument: amount_usd, equals: "250" }'),
  );
  assert.match(
    message,
    /^agents\.yml:11:\d+ .*"reason" of issue_refund is text, and greater_than compares numbers; compare one of its number arguments \(amount_usd\)/m,
  );
  assert.match(
    message,
    /^agents\.yml:15:\d+ .*"order_id" of issue_refund is text, and equals 1077 is a number.*write it in quotes: equals: "1077"/m,
  );
  assert.match(
    message,
    /^agents\.yml:19:\d+ .*"amount_usd" of issue_refund is a number, .*write it without quotes: equals: 250/m,
  );
});

test("a matching condition loads, and so does one on an HTTP tool's argument", () => {
  const tool = `tools:
  - name: refund_gift_card
    description: Refund to a gift card.
    class: irreversible
    url: https://pay.example/refund
    parameters: { type: object, properties: { amount: { type: number }, card: { type: string } } }
`;
  const good = policy("gift", "refund_gift_card", "{ argument: amount, at_least: 50 }");
  const file = `agents:\n  - id: billing\n    name: Billing\n    icon: ":credit_card:"\n    instructions: Refund.\n    tools: [refund_gift_card]\n${tool}policies:\n  approvals:\n${good}`;
  assert.equal(parseAgentsFile(file, "agents.yml", demoTools).policies.approvals.length, 1);
  const bad = file.replace("argument: amount,", "argument: card,");
  assert.throws(
    () => parseAgentsFile(bad, "agents.yml", demoTools),
    /agents\.yml:17:\d+ .*"card" of refund_gift_card is text, and at_least compares numbers/,
  );
});

test("an approval policy on a read tool is refused: read tools never wait", () => {
  const message = withPolicies(policy("lookups", "lookup_order"));
  assert.match(
    message,
    /^agents\.yml:10:\d+ policies\.approvals\[0\]\.tool: "lookup_order" is a read tool, and read tools never wait for approval: .*class the tool write/m,
  );
});

test("a policy that an earlier one on the same tool always beats is refused, naming that one's line", () => {
  // Listed loosest first: a 5,000 USD refund would need a billing lead alone, never the CFO.
  const message = withPolicies(
    policy("leads", "issue_refund", "{ argument: amount_usd, greater_than: 100 }") +
      policy("cfo", "issue_refund", "{ argument: amount_usd, greater_than: 1000 }") +
      policy("rest", "issue_refund"),
  );
  assert.match(
    message,
    /^agents\.yml:13:\d+ policies\.approvals\[1\]\.id: this policy never applies: "leads" \(line 9\) comes first .*list the stricter policy first$/m,
  );
  // A policy without a condition after conditional ones takes the rest: it does apply.
  assert.doesNotMatch(message, /approvals\[2\]/);
  // Stricter first loads: each policy applies to some amount.
  const stricterFirst =
    policy("cfo", "issue_refund", "{ argument: amount_usd, greater_than: 1000 }") +
    policy("leads", "issue_refund", "{ argument: amount_usd, greater_than: 100 }") +
    policy("rest", "issue_refund");
  const file = billingFile(stricterFirst);
  assert.equal(parseAgentsFile(file, "agents.yml", demoTools).policies.approvals.length, 3);
  // An unconditional policy first beats every later one on the tool.
  const everyCall = withPolicies(
    policy("all", "issue_refund") +
      policy("big", "issue_refund", "{ argument: amount_usd, equals: 5000 }"),
  );
  assert.match(
    everyCall,
    /^agents\.yml:12:\d+ policies\.approvals\[1\]\.id: this policy never applies: "all" \(line 9\)/m,
  );
});

test("a condition without a comparator is refused rather than matching every call", () => {
  const message = withPolicies(policy("refunds", "issue_refund", "{ argument: amount_usd }"));
  assert.match(
    message,
    /^agents\.yml:11:\d+ policies\.approvals\[0\]\.when: add one of greater_than, at_least or equals/m,
  );
});

test("durations must be longer than zero, and a bare number is told its unit", () => {
  const message = withPolicies(
    `${policy("refunds", "issue_refund").trimEnd()}\n      expires_after: 4\n`,
    "  rate_limits:\n    tools:\n      - { tool: issue_refund, max: 5, per: 0s }\ndigest:\n  stale_after: 0m\n",
  );
  assert.match(
    message,
    /^agents\.yml:12:\d+ policies\.approvals\[0\]\.expires_after: write it with a unit, like "4h" \(s, m, h or d\)$/m,
  );
  assert.match(
    message,
    /^agents\.yml:15:\d+ policies\.rate_limits\.tools\[0\]\.per: use a duration longer than zero/m,
  );
  assert.match(
    message,
    /^agents\.yml:17:\d+ digest\.stale_after: use a duration longer than zero/m,
  );
});

test("an HTTP tool's URL that is not one is refused, also once its variables are filled in", () => {
  const tool = (name: string, url: string) =>
    `  - name: ${name}\n    description: Find.\n    class: read\n    url: ${url}\n    parameters: { type: object }\n`;
  const file = (tools: string) =>
    `agents:\n  - id: helper\n    name: Helper\n    icon: ":wave:"\n    instructions: Help.\ntools:\n${tools}`;
  // Written wrong: refused with the file's other shape errors.
  const written = configErrorOf(() =>
    parseAgentsFile(file(tool("a", "https://:::/find") + tool("b", "http:///find")), "agents.yml"),
  );
  assert.match(
    written,
    /^agents\.yml:10:\d+ tools\[0\]\.url: "https:\/\/:::\/find" is not a URL Baton can call: ":::" is not a valid host name .*write it like https:/m,
  );
  assert.match(written, /^agents\.yml:15:\d+ tools\[1\]\.url: "http:\/\/\/find" has no host/m);

  // Wrong once the environment fills it in: the message shows the URL as written, not the values.
  const referenced = file(
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the agents file's ${NAME} syntax
    tool("c", "https://${CRM_HOST}/find") + tool("d", "https://crm.example/find?k=${KEY}"),
  );
  const filled = configErrorOf(() =>
    parseAgentsFile(referenced, "agents.yml", undefined, {
      CRM_HOST: "crm example",
      KEY: "secret-key",
    }),
  );
  assert.match(
    filled,
    /^agents\.yml:10:\d+ tools\[0\]\.url: "https:\/\/\$\{CRM_HOST\}\/find" is not a URL Baton can call once its environment variables are filled in: its host is not a valid host name/m,
  );
  assert.doesNotMatch(filled, /crm example|secret-key|tools\[1\]/);
  const env = { CRM_HOST: "crm.example\n", KEY: "k" };
  assert.equal(parseAgentsFile(referenced, "agents.yml", undefined, env).tools.length, 2);
});

test("a tool or handoff listed twice is refused at the second one", () => {
  const text = `agents:
  - id: billing
    name: Billing
    icon: ":credit_card:"
    instructions: Refund.
    tools: [lookup_order, issue_refund, lookup_order]
    handoffs: [helper, helper]
  - id: helper
    name: Helper
    icon: ":wave:"
    instructions: Help.
`;
  const message = configErrorOf(() => parseAgentsFile(text, "agents.yml", demoTools));
  assert.match(
    message,
    /^agents\.yml:6:41 agents\[0\]\.tools\[2\]: "lookup_order" is already listed at tools\[0\]; list each tool once$/m,
  );
  assert.match(
    message,
    /^agents\.yml:7:24 agents\[0\]\.handoffs\[1\]: "helper" is already listed at handoffs\[0\]; list each agent once$/m,
  );
});

test("a USD cap on a model with no known price is refused until the file prices it", () => {
  const text = (prices: string) => `defaults:
  model: llama3.1
agents:
  - id: helper
    name: Helper
    icon: ":wave:"
    instructions: Help.
    caps: { usd_per_task: 1, tokens_per_task: 5000 }
${prices}`;
  const message = configErrorOf(() => parseAgentsFile(text(""), "agents.yml"));
  assert.match(
    message,
    /^agents\.yml:8:\d+ agents\[0\]\.caps\.usd_per_task: the model "llama3\.1" has no known price, .*add its price in USD under prices/m,
  );
  assert.equal(message.split("\n").length, 2, message);
  const priced = parseAgentsFile(
    text("prices:\n  llama3.1: { input_per_million: 0.2, output_per_million: 0.6 }\n"),
    "agents.yml",
  );
  assert.deepEqual(priced.prices, {
    "llama3.1": { input_per_million: 0.2, output_per_million: 0.6 },
  });
  const free = configErrorOf(() =>
    parseAgentsFile(
      text("prices:\n  llama3.1: { input_per_million: 0, output_per_million: 0 }\n"),
      "agents.yml",
    ),
  );
  assert.match(free, /agents\[0\]\.caps\.usd_per_task: the model "llama3\.1" is priced at 0/);
});

test("two agents with one display name are refused: people could not tell them apart", () => {
  const text = `${MINIMAL}  - id: helper-two
    name: helper
    icon: ":wave:"
    instructions: Answer too.
`;
  assert.match(
    errorOf(text),
    /^agents\.yml:7:11 agents\[1\]\.name: "helper" reads as the name or id of agents\[0\] \("Helper"\); each agent needs a name of its own/m,
  );
});

test("a supervised agent with writes and nobody to supervise it is refused; with supervisors or an approval it loads", () => {
  const supervised = `agents:
  - id: billing
    name: Billing
    icon: ":credit_card:"
    instructions: Refund what was paid.
    tools: [lookup_order, issue_refund]
    autonomy: supervised
`;
  assert.match(
    configErrorOf(() => parseAgentsFile(supervised, "agents.yml", demoTools)),
    /^agents\.yml:7:15 agents\[0\]\.autonomy: a supervised agent's writes \(issue_refund\) wait for policies\.supervisors, and none are named/m,
  );
  const withSupervisors = `${supervised}policies:\n  supervisors: { users: [U0BOSS] }\n`;
  assert.doesNotThrow(() => parseAgentsFile(withSupervisors, "agents.yml", demoTools));
  const everyCallApproved = `${supervised}policies:
  approvals:
    - id: refunds
      tool: issue_refund
      approvers: { users: [U0LEAD] }
`;
  assert.doesNotThrow(() => parseAgentsFile(everyCallApproved, "agents.yml", demoTools));
});

test("names that differ only by punctuation, or a name that is another agent's id, are refused too", () => {
  const punctuation = `agents:
  - { id: support, name: "Customer Service", icon: ":a:", instructions: help }
  - { id: vip, name: "Customer-Service", icon: ":b:", instructions: help }
`;
  assert.match(
    errorOf(punctuation),
    /agents\[1\]\.name: "Customer-Service" reads as the name or id of agents\[0\]/,
  );
  const anId = `agents:
  - { id: billing, name: Money, icon: ":a:", instructions: help }
  - { id: refunds, name: Billing, icon: ":b:", instructions: help }
`;
  assert.match(
    errorOf(anId),
    /agents\[1\]\.name: "Billing" reads as the name or id of agents\[0\]/,
  );
});

test("a direct message's ID where a channel belongs is refused, saying why", () => {
  // Line 7: cards for the whole team would go to one person's DM, where nobody else can click them.
  const text = `${MINIMAL}policies:\n  decisions_channel: D0DANA01\n`;
  assert.match(
    errorOf(text),
    /^agents\.yml:7:\d+ .*direct messages, which nobody else sees[^\n]*$(?![\s\S]*looks like)/m,
  );
});
