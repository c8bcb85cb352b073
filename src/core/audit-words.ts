import type { AskerRole } from "./policy.ts";

/**
 * The words of a task's story, one line per audit event, built from the event's data. A line is a
 * list of parts: plain text (anyone's: customer text, model text, tool arguments) and the names it
 * holds, which each surface says its own way: the CLI by id ("agent:billing", "human:U0LEE", an ISO
 * time), Slack as people read them (a display name, a mention, a date in the reader's time zone).
 * Slack escapes every plain part, so no text can pass for a name, a mention or a link there.
 */
export type Named =
  | { agent: string; plain: string }
  /** A person's Slack id. */
  | { person: string; plain: string }
  /** A user group's Slack id (an approver). */
  | { group: string; plain: string }
  /** An owner `{ kind, id }`: "user", "group", "people" (ids joined by commas) or "channel". */
  | { owner: { kind: string; id: string }; plain: string }
  /** An ISO time. */
  | { at: string; plain: string }
  /** Who allowed a call as the ledger says it ("policy:read", "approval:<id> by U1"). */
  | { allowedBy: string; decidedBy: string; plain: string }
  /** Text a person typed in Slack, with Slack's markup: Slack shows it as they saw it. */
  | { typed: string; plain: string }
  /** An internal id, for the CLI only ("call_1"): Slack leaves it out. */
  | { internal: string; plain: string };

export type Part = string | Named;
type Piece = string | number | Named | readonly Piece[];

/** A tagged template: `say\`Handed over to ${agent(id)}: ${text}\``, a line of parts. */
function say(strings: TemplateStringsArray, ...pieces: Piece[]): Part[] {
  const parts: Part[] = [];
  const add = (piece: Piece) => {
    if (Array.isArray(piece)) for (const p of piece as readonly Piece[]) add(p);
    else if (typeof piece === "number") parts.push(String(piece));
    else if (piece !== "") parts.push(piece as string | Named);
  };
  strings.forEach((text, i) => {
    add(text);
    if (i < pieces.length) add(pieces[i] as Piece);
  });
  return parts;
}

/** The line as the CLI and exports print it: ids as the ledger keeps them. */
export function plainWords(parts: readonly Part[]): string {
  return parts.map((p) => (typeof p === "string" ? p : p.plain)).join("");
}

const agent = (id: string, plain = `agent:${id}`): Named => ({ agent: id, plain });
const typed = (value: unknown): Named => ({ typed: str(value), plain: str(value) });
const person = (id: string, plain = `human:${id}`): Named => ({ person: id, plain });

type Data = Record<string, unknown>;

/** `who`: the actor's id, for a sentence that names them. */
export const DESCRIBE: Record<string, (d: Data, who: string) => Part[]> = {
  message_received: (d) => say`Message: "${typed(d.text)}"`,
  task_started: (d) => {
    const id = str(d.agent ?? d.owner);
    return say`Task started${id ? say` with ${agent(id, id)}` : ""}${d.title ? say`: "${typed(d.title)}"` : ""}`;
  },
  handoff: (d) => {
    const note = obj(d.note);
    if (d.kind === "hand_back") return say`Handed back to ${agent(str(d.to))}: ${str(note.result)}`;
    return say`Handed over to ${agent(str(d.to))}: ${str(note.summary)} Needed: ${str(note.needed)}`;
  },
  tool_call: (d) => say`${str(d.tool)}(${argsText(d.args)}) → ${str(d.status)}; ${allowedWords(d)}`,
  tool_refused: (d) => say`Refused ${str(d.tool)}(${sentArgs(d)}): ${refusedFor(d)}`,
  tool_call_repeated: (d) => {
    const ids = `${str(d.call_id)}, as ${str(d.repeat_of)}`;
    return say`${str(d.tool)} called again in the same reply${{ internal: ids, plain: ` (${ids})` }}; not run twice`;
  },
  tool_shadowed: (d) => say`Proposed ${str(d.tool)}(${argsText(d.args)}) in shadow mode; not run`,
  model_error: (d) =>
    say`Model error: ${str(d.error ?? d.message)}${d.tool ? ` (${str(d.tool)})` : ""}`,
  approval_requested: (d) => {
    const why = d.why === undefined ? "" : ` (${str(d.why)})`;
    const expires = str(d.expires_at);
    return say`Asked ${people(obj(d.approvers))} to approve ${str(d.tool)}(${argsText(d.args)}) under policy ${str(d.policy)}${why}${askedBy(obj(d.asked_by))}, expires ${{ at: expires, plain: expires }}`;
  },
  approval_decided: (d) => {
    if (d.decision === "cancelled")
      return say`Approval of ${str(d.tool)}(${argsText(d.args)}) cancelled: ${str(d.reason)}`;
    const verdict = { approved: "Approved", rejected: "Rejected", expired: "Expired" }[
      str(d.decision)
    ];
    const reason = d.reason ? `; reason: "${str(d.reason)}"` : "";
    return say`${verdict ?? str(d.decision)} ${str(d.tool)}(${argsText(d.args)})${reason}`;
  },
  approval_withdrawn: (d) => say`Approval of ${str(d.tool)} withdrawn: the task stopped first`,
  approval_refused: (d, who) => say`Approval click refused: ${person(who, who)} ${refusedWhy(d)}`,
  approval_escalated: (d) =>
    say`Nobody decided in time: the approval${d.tool ? ` of ${str(d.tool)}` : ""} went to ${people(obj(d.to))}`,
  approval_click_ignored: (d) => say`Approval click ignored: already ${str(d.status)}`,
  escalated: (d) => {
    const note = obj(d.note);
    const limit = d.reason === "cap" || d.reason === "limit";
    const why = limit ? "as it reached a limit" : "as the agent asked for a person";
    return say`Escalated to ${owned(obj(d.owner))}, ${why}: ${str(note.summary)}${limit && note.reason ? ` ${str(note.reason)}` : ""}`;
  },
  escalation_decided: (d) => {
    const choice = obj(d.choice);
    const where = d.from === "thread" ? " (in the thread)" : "";
    if (choice.kind === "take_over") return say`Took the escalated work over${where}`;
    const saying = choice.instruction ? `, saying "${str(choice.instruction)}"` : "";
    return say`Sent the escalated work to ${agent(str(choice.agentId))}${saying}${where}`;
  },
  escalation_refused: (d) =>
    say`Escalation click refused: ${ESCALATION_REFUSED[str(d.reason)] ?? "not its owner"} (it is ${owned(obj(d.owner))}'s)`,
  escalation_reassigned: (d) =>
    say`Nobody answered in time: the escalation went to ${owned(obj(d.to))}`,
  escalation_reminded: (d) => say`Nobody answered in time: ${owned(obj(d.to))} reminded`,
  task_closed: () => say`Marked done`,
  close_refused: (d) => {
    const owner = obj(d.owner);
    return say`Refused to mark done: the task is ${owned(owner, str(owner.id))}'s`;
  },
  task_reopened: (d) => {
    const after = { done: " after its answer", failed: " after it failed" }[str(d.was)] ?? "";
    const id = str(d.owner);
    const owner = d.owner_kind === "agent" ? agent(id) : owned({ kind: "people", id }, id);
    return say`Reopened by a reply in its thread${after}; back with ${owner}`;
  },
  answer: (d) => say`Answered: "${str(d.text)}"`,
  task_failed: (d) => say`Task failed: ${str(d.reason)}`,
  answer_sent_by_dm: (d) => say`Answer sent to the requester by DM: ${str(d.reason)}`,
  answer_dm_refused: (d) =>
    say`Answer not sent to the requester by DM either: ${str(d.error)} (${str(d.reason)})`,
  attempt_failed: (d) =>
    say`Try failed, ${d.retried === false ? "no tries left" : "retried"}: ${str(d.error)}`,
  task_stopped: (d) => say`Task stopped and handed to a person: ${str(d.reason)}`,
  model_call: (d) =>
    say`${str(d.model)}: ${num(d.prompt_tokens)} prompt + ${num(d.completion_tokens)} completion tokens${d.usage_estimated === true ? " (estimated: the server sent no usage)" : ""}, $${num(d.cost_usd).toFixed(6)}, ${num(d.latency_ms)} ms (${str(d.outcome)})`,
};

export const str = (value: unknown): string =>
  typeof value === "string" ? value : value == null ? "" : json(value, 300);
const num = (value: unknown): number => (typeof value === "number" ? value : Number(value) || 0);
const obj = (value: unknown): Data =>
  value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Data) : {};
const list = (value: unknown): string[] => (Array.isArray(value) ? value.map(str) : []);

/** Who allowed a call, or, for one a person's decision or none kept from running, why it did not run. */
function allowedWords(d: Data): Part[] {
  const decidedBy = str(d.decided_by);
  if (d.status === "rejected")
    return decidedBy ? say`rejected by ${person(decidedBy)}` : say`not run`;
  if (d.status === "expired") return say`not run: nobody decided in time`;
  if (d.status === "withdrawn") return say`not run: the task stopped first`;
  if (d.status === "not_run")
    return decidedBy
      ? say`approved by ${person(decidedBy)}, but not run: the agents file changed first`
      : say`not run: the agents file changed first`;
  const allowedBy = str(d.allowed_by);
  return [{ allowedBy, decidedBy, plain: `allowed by ${allowedBy || "nobody"}` }];
}

/**
 * What a refused call was sent: its arguments as read (a rate limit's), or as the model wrote them
 * (the allowlist's, a schema's), which need not be JSON, nor whole past 2,000 characters.
 */
function sentArgs(d: Data): string {
  if ("args" in d) return argsText(d.args);
  const written = str(d.arguments);
  try {
    return argsText(JSON.parse(written));
  } catch {
    return cut(written, 300);
  }
}

/** Why a call was refused, in the words the model was told, less the tool's name they start with. */
function refusedFor(d: Data): string {
  const told = str(d.message ?? d.reason);
  const named = `${str(d.tool)}: `;
  return told.startsWith(named) ? told.slice(named.length) : told;
}

/** Why a person's approval click was refused, after their id. */
function refusedWhy(d: Data): string {
  if (d.reason === "not_an_approver") return "is not one of its approvers";
  if (d.reason === "no_longer_named")
    return `is no longer named for it${d.policy_id ? ` (${str(d.policy_id)})` : ""} in the agents file`;
  if (d.reason !== "own_request") return `may not decide it (${str(d.reason)})`;
  const part = ASKED_AS[str(d.asked_as)];
  return `asked for it${part ? ` (${part})` : ""}, so may not decide it`;
}

/** Why a person's escalation click was refused, by the reason audited ("not its owner" without). */
const ESCALATION_REFUSED: Record<string, string> = {
  own_request: "they asked for it themselves",
  outside_organization: "they are of another organization (Slack Connect)",
  no_longer_named: "the agents file no longer names them for its lane",
};

/** The part a person had in asking for an approval. */
const ASKED_AS: Record<string, string> = {
  requester: "started the task",
  handed_on: "handed the work on",
  thread: "wrote in its thread",
} satisfies Record<AskerRole, string>;

/** "U1, S2" from `{ users, groups }`. */
function people(who: Data): Part[] {
  const named: Named[] = [
    ...list(who.users).map((id) => person(id, id)),
    ...list(who.groups).map((id): Named => ({ group: id, plain: id })),
  ];
  return named.length === 0 ? ["nobody"] : named.flatMap((n, i) => (i === 0 ? [n] : [", ", n]));
}

/** "channel C1", "user U1" from an owner `{ kind, id }`. */
const owned = (owner: Data, plain = `${str(owner.kind)} ${str(owner.id)}`.trim()): Named => ({
  owner: { kind: str(owner.kind), id: str(owner.id) },
  plain,
});

/** ", requested by human:U1, handed on by human:U2": who asked, as the approval card named them. */
function askedBy(who: Data): Part[] {
  const parts: [string, string[]][] = [
    ["requested by", who.requester ? [str(who.requester)] : []],
    ["handed on by", list(who.handed_on_by)],
    ["asked in the thread by", list(who.in_thread)],
  ];
  return parts
    .filter(([, ids]) => ids.length > 0)
    .flatMap(
      ([words, ids]) =>
        say`, ${words} ${ids.flatMap((id, i) => say`${i ? ", " : ""}${person(id)}`)}`,
    );
}

/** `order_id=1077, amount_usd=149`: arguments as a person reads them. */
export function argsText(args: unknown): string {
  const fields = obj(args);
  const keys = Object.keys(fields);
  if (keys.length === 0) return args == null ? "" : json(args, 300);
  return cut(keys.map((k) => `${k}=${json(fields[k], 120)}`).join(", "), 300);
}

function json(value: unknown, max: number): string {
  try {
    return cut(JSON.stringify(value) ?? String(value), max);
  } catch {
    return cut(String(value), max);
  }
}

export function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
