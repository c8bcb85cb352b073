import { z } from "zod";

/**
 * The operator's agents file (YAML): agents, their tools and handoff targets, and policies.
 * Parsed once at start; `loadAgentsFile` maps zod issues back to YAML line numbers.
 * Objects are strict: a misspelt key (`autonmy: shadow`) must fail, not fall back to a default.
 */
const id = z
  .string()
  .regex(
    /^[a-z][a-z0-9-]{0,38}$/,
    "use lowercase letters, digits and dashes, starting with a letter",
  );
const slackUserId = z.string().regex(/^[UW][A-Z0-9]{2,}$/, "a Slack user ID looks like U012ABCDEF");
const slackGroupId = z
  .string()
  .regex(/^S[A-Z0-9]{2,}$/, "a Slack user group ID looks like S012ABCDEF");
// Not a D… ID: a direct message is seen by its person alone, so no card or notice belongs there.
const slackChannelId = z.string().superRefine((id, ctx) => {
  if (/^[CG][A-Z0-9]{2,}$/.test(id)) return;
  ctx.addIssue({
    code: "custom",
    message: /^D[A-Z0-9]{2,}$/.test(id)
      ? "a D… ID is someone's direct messages, which nobody else sees: name a channel (C012ABCDEF)"
      : "a Slack channel ID looks like C012ABCDEF",
  });
});
/** Durations as "90s", "15m", "4h", "2d", in milliseconds. */
const DURATION_UNITS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const anyDurationSchema = z
  .string({
    error: (issue) =>
      typeof issue.input === "number"
        ? `write it with a unit, like "${issue.input}h" (s, m, h or d)`
        : undefined,
  })
  .regex(/^\d+[smhd]$/, 'write a duration like "90s", "15m", "4h" or "2d"')
  .transform((text) => {
    const amount = Number(text.slice(0, -1));
    return amount * DURATION_UNITS[text.slice(-1) as keyof typeof DURATION_UNITS];
  });
/** Never zero: a zero window, expiry or deadline would disable what it sets. */
export const durationSchema = anyDurationSchema.refine(
  (ms) => ms > 0,
  'use a duration longer than zero, like "90s", "15m", "4h" or "2d"',
);

export const AUTONOMY_MODES = ["shadow", "supervised", "autonomous"] as const;
export type AutonomyMode = (typeof AUTONOMY_MODES)[number];

const peopleSchema = z
  .strictObject({
    users: z.array(slackUserId).default([]),
    groups: z.array(slackGroupId).default([]),
  })
  .refine((p) => p.users.length + p.groups.length > 0, "name at least one user or group");
export type People = z.infer<typeof peopleSchema>;

export const agentSchema = z.strictObject({
  id,
  name: z.string().min(1).max(80),
  /** ":emoji:" or an https URL to an image. */
  icon: z
    .string()
    .regex(/^(:[a-z0-9_+-]+:|https:\/\/\S+)$/, 'use ":emoji_name:" or an https:// image URL'),
  model: z.string().min(1).optional(),
  instructions: z.string().min(1).max(8_000),
  autonomy: z.enum(AUTONOMY_MODES).default("autonomous"),
  tools: z.array(z.string()).default([]),
  handoffs: z.array(id).default([]),
  /** Channels where this agent takes new work first. */
  channels: z.array(slackChannelId).default([]),
  /** Per-task and per-day caps; a task over its cap stops and goes to a human. */
  caps: z
    .strictObject({
      tokens_per_task: z.number().int().positive().optional(),
      usd_per_task: z.number().positive().optional(),
      usd_per_day: z.number().positive().optional(),
    })
    .default({}),
});
export type AgentConfig = z.infer<typeof agentSchema>;

const conditionSchema = z
  .strictObject({
    argument: z.string().min(1),
    greater_than: z.number().optional(),
    at_least: z.number().optional(),
    equals: z.union([z.string(), z.number(), z.boolean()]).optional(),
  })
  // The gate reads one comparator; a second would be silently ignored, and none matches every call.
  .refine(
    (c) => [c.greater_than, c.at_least, c.equals].filter((v) => v !== undefined).length <= 1,
    "use only one of greater_than, at_least or equals (write two policies for two conditions)",
  )
  .refine(
    (c) => [c.greater_than, c.at_least, c.equals].some((v) => v !== undefined),
    "add one of greater_than, at_least or equals; for every call of the tool to wait, remove `when`",
  );
export type ApprovalCondition = z.infer<typeof conditionSchema>;

export const approvalPolicySchema = z.strictObject({
  id,
  tool: z.string().min(1),
  /** When absent, every call of the tool needs approval. */
  when: conditionSchema.optional(),
  approvers: peopleSchema,
  expires_after: durationSchema.prefault("4h"),
  /** Who the request goes to once it expires; without it, the request just expires. */
  fallback: peopleSchema.optional(),
});
export type ApprovalPolicy = z.infer<typeof approvalPolicySchema>;

const laneSchema = z.strictObject({
  channel: slackChannelId.optional(),
  users: z.array(slackUserId).default([]),
  groups: z.array(slackGroupId).default([]),
  respond_within: durationSchema.prefault("4h"),
  fallback: peopleSchema.optional(),
});

/** At most `max` in any window of `per` (a sliding window, counted from the database). */
const rateSchema = z.strictObject({
  max: z.number().int().positive(),
  per: durationSchema,
});

const rateLimitsSchema = z.strictObject({
  /** Runs of a tool across all tasks: a call past the limit is refused and the model told why. */
  tools: z.array(rateSchema.extend({ tool: z.string().min(1) })).default([]),
  /** New tasks one person may start: past the limit they are told, and no task starts. */
  new_tasks_per_person: rateSchema.optional(),
});
export type RateLimits = z.infer<typeof rateLimitsSchema>;
export type ToolRateLimit = RateLimits["tools"][number];

/** `${NAME}`: a value read from the environment when the tool is called, so secrets stay out of the file. */
export const ENV_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * A tool of the operator's own systems, called over HTTP: Baton POSTs the validated arguments as
 * JSON and gives the JSON answer to the model (see the README's "Your own tools").
 */
export const httpToolSchema = z.strictObject({
  name: z
    .string()
    .regex(
      /^[a-z][a-z0-9_]{0,63}$/,
      "use lowercase letters, digits and underscores, starting with a letter",
    ),
  /** What the model reads to decide when to call it. */
  description: z.string().trim().min(1).max(1_000),
  /** What it does, as the requester reads it after "needs approval to": "issue a refund". */
  label: z
    .string()
    .trim()
    .refine(
      (label) => /^[^\p{Cc}]{1,80}$/u.test(label),
      'a short phrase on one line, like "issue a refund" (80 characters at most)',
    )
    .optional(),
  class: z.enum(["read", "write", "irreversible"]),
  url: z
    .string()
    .refine(
      (url) => /^https?:\/\/\S+$/.test(url),
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the file's ${NAME} syntax, shown as written
      "use an http:// or https:// URL (${NAME} reads a part from the environment)",
    )
    // One with `${NAME}` in it is checked once the environment fills it in (agents-file-checks).
    .superRefine((url, ctx) => {
      const wrong = /^https?:\/\/\S+$/.test(url) && !url.match(ENV_REFERENCE) && urlProblem(url);
      if (wrong) ctx.addIssue({ code: "custom", message: wrong });
    }),
  headers: z.record(z.string().regex(/^[A-Za-z0-9-]+$/, "a header name"), z.string()).default({}),
  // Its own bounds say more than "longer than zero".
  timeout: anyDurationSchema
    .prefault("30s")
    .refine((ms) => ms >= 1_000 && ms <= 300_000, "give the tool from 1s to 5m to answer"),
  /** JSON Schema of the arguments: an object. Baton validates each call against it. */
  parameters: z
    .record(z.string(), z.unknown())
    .refine(
      (schema) => schema.type === "object",
      "the parameters are a JSON Schema with type: object",
    ),
});
export type HttpToolConfig = z.infer<typeof httpToolSchema>;

/**
 * Whatever `new URL()` cannot read in an HTTP tool's URL, in words; undefined when it can. Its own
 * error says only "Invalid URL", so the usual causes are told apart here. `asWritten`: the URL
 * before `${NAME}` was filled in, which is all the message shows (a value may be a secret).
 */
export function urlProblem(url: string, asWritten = url): string | undefined {
  const filledIn = asWritten === url ? "" : " once its environment variables are filled in";
  const fix = "write it like https://crm.internal.example/baton/find_customer";
  // WHATWG URLs forgive "http:///find" (as http://find/): the host as written must be there.
  const host = /^[a-z]+:\/\/([^/?#]*)/i.exec(url)?.[1] ?? "";
  if (host === "") return `"${asWritten}" has no host${filledIn}; ${fix}`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    const what = filledIn ? "its host" : `"${host}"`;
    return `"${asWritten}" is not a URL Baton can call${filledIn}: ${what} is not a valid host name (with an optional :port); ${fix}`;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:")
    return `"${asWritten}" is not an http:// or https:// URL${filledIn}; ${fix}`;
  return undefined;
}

/** USD per million tokens of a model the built-in list does not price, or prices otherwise. */
const priceSchema = z.strictObject({
  input_per_million: z.number().nonnegative(),
  output_per_million: z.number().nonnegative(),
});

export const agentsFileSchema = z.strictObject({
  defaults: z
    .strictObject({
      model: z.string().min(1).default("gpt-4o-mini"),
      /** Agent that takes new work in channels no agent claims. */
      entry_agent: id.optional(),
      hop_limit: z.number().int().min(1).max(100).default(12),
      /** Model turns an agent may take on a task without an answer or a reply in between. */
      turn_limit: z.number().int().min(2).max(500).default(25),
    })
    .prefault({}),
  agents: z.array(agentSchema).min(1, "define at least one agent"),
  /** By model name; over the built-in prices. The USD caps count with them. */
  prices: z.record(z.string().min(1), priceSchema).default({}),
  /** Tools of the operator's systems, called over HTTP; agents list them by name like any tool. */
  tools: z.array(httpToolSchema).default([]),
  policies: z
    .strictObject({
      approvals: z.array(approvalPolicySchema).default([]),
      /** Who approves the writes of `supervised` agents that no approval policy names. */
      supervisors: peopleSchema.optional(),
      /**
       * Where the cards of a task asked in a direct message go (nobody else can see that thread):
       * an approval's, and an escalation's whose lane names no channel. Default: digest.channel.
       */
      decisions_channel: slackChannelId.optional(),
      lanes: z
        .strictObject({
          support: laneSchema.optional(),
          sales: laneSchema.optional(),
          operations: laneSchema.optional(),
          owner_escalation: laneSchema.optional(),
        })
        .default({}),
      rate_limits: rateLimitsSchema.prefault({}),
    })
    .prefault({}),
  digest: z
    .strictObject({
      channel: slackChannelId.optional(),
      schedule: z.string().default("0 9 * * 1-5"),
      timezone: z.string().default("UTC"),
      stale_after: durationSchema.prefault("24h"),
      approval_stale_after: durationSchema.prefault("4h"),
    })
    .prefault({}),
});
export type AgentsFile = z.infer<typeof agentsFileSchema>;
