import { z } from "zod";

/**
 * The handoff note: what the next owner reads instead of the transcript.
 * Validated at the boundary (model tool arguments, stored JSON, button values).
 * Lengths keep it readable in seconds and inside Block Kit's limits. Strict: a setting the model
 * made up is refused with its name, never dropped unseen (see `withStrayFacts`).
 */
export const LANES = ["support", "sales", "operations", "owner_escalation"] as const;
export const URGENCIES = ["low", "normal", "high", "urgent"] as const;

/** Facts in one note. */
export const FACTS_MAX = 20;

const short = (max: number) => z.string().trim().min(1).max(max);

export const handoffNoteSchema = z.strictObject({
  /** One or two sentences: what this is about. */
  summary: short(500).describe("One or two sentences: what this is about, for whom."),
  /** What was already captured, checked or tried. */
  done: z.array(short(300)).max(10).default([]).describe("What you already checked or tried."),
  /** What the next owner should do or find out: the recommended next action. */
  needed: short(500).describe("What the next agent should do or find out."),
  /** Why it goes to this agent, when the summary does not say. */
  reason: short(300).optional().describe("Why this agent, if the summary does not say."),
  /** Facts the next owner needs (order id, sku, amounts). Flat key/value pairs. */
  facts: z
    .record(z.string().max(60), z.union([z.string().max(300), z.number(), z.boolean()]))
    // Every later system message of the task carries them: a note's few, not a dump.
    .refine((facts) => Object.keys(facts).length <= FACTS_MAX, {
      message: `at most ${FACTS_MAX} facts: keep the ones the next owner needs`,
    })
    .default({})
    .describe(
      `Facts the next owner needs, as flat pairs: order_id, sku, amounts (${FACTS_MAX} at most).`,
    ),
  /** What is still unknown. */
  unknowns: z.array(short(300)).max(10).default([]).describe("What is still unknown."),
  urgency: z.enum(URGENCIES).default("normal"),
  /** When it must be done by, as the requester put it ("today 17:00 UTC"). */
  deadline: z
    .string()
    .trim()
    .min(1)
    .max(100)
    .optional()
    .describe("By when, if there is a deadline."),
  confidence: z.number().min(0).max(1).optional().describe("How sure you are, 0 to 1."),
  /** What to open first: an order, a ticket, a link. */
  artifact: short(300).optional().describe("What to open first: an order, a ticket, a link."),
});
export type HandoffNote = z.infer<typeof handoffNoteSchema>;

/** The note for a handback: the result of the work handed over. */
export const handBackNoteSchema = z.strictObject({
  result: short(800),
  facts: handoffNoteSchema.shape.facts,
});
export type HandBackNote = z.infer<typeof handBackNoteSchema>;

/** Escalation to a human: answers who, what, why, when, where and what next. */
export const escalationNoteSchema = z.strictObject({
  requester: short(200),
  summary: short(500),
  done: z.array(short(300)).max(10).default([]),
  reason: short(500),
  urgency: z.enum(URGENCIES).default("normal"),
  deadline: z.string().max(100).optional(),
  confidence: z.number().min(0).max(1),
  lane: z.enum(LANES),
  artifact: z.string().max(500).optional(),
  recommended_action: short(500),
  facts: handoffNoteSchema.shape.facts,
});
/**
 * An agent must state a confidence; a note Baton writes itself (a cap, the hop limit, a note it
 * could not read) states none, and its card shows none.
 */
export type EscalationNote = Omit<z.infer<typeof escalationNoteSchema>, "confidence"> & {
  confidence?: number;
};

/**
 * Reads a model's note before its schema checks it: `null` in an optional field (models write
 * `"deadline": null` for "none") is absent, and facts written beside the fields move into `facts`.
 * A required field's null stays, so the schema refuses it by name.
 */
export function readNote(args: unknown, schema: z.ZodObject): unknown {
  return withStrayFacts(withoutNulls(args, schema), schema);
}

function withoutNulls(args: unknown, schema: z.ZodObject): unknown {
  if (typeof args !== "object" || args === null || Array.isArray(args)) return args;
  const shape: Record<string, z.ZodType> = schema.shape;
  return Object.fromEntries(
    Object.entries(args).filter(
      ([key, value]) => value !== null || !shape[key]?.safeParse(undefined).success,
    ),
  );
}

/**
 * A model often writes a note's facts beside its fields (`order_id` next to `summary`) rather than
 * under `facts`. Such a flat value is moved into `facts`, so the next owner still reads it; what
 * is left unknown is refused by the strict schema, by name.
 */
export function withStrayFacts(args: unknown, schema: z.ZodObject): unknown {
  if (typeof args !== "object" || args === null || Array.isArray(args)) return args;
  const known = new Set(Object.keys(schema.shape));
  const moved: Record<string, unknown> = {};
  const kept: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(args)) {
    const flat =
      typeof value === "string" || typeof value === "number" || typeof value === "boolean";
    if (!known.has(key) && flat) moved[key] = value;
    else kept[key] = value;
  }
  if (Object.keys(moved).length === 0) return args;
  const facts = kept.facts;
  if (facts !== undefined && (typeof facts !== "object" || facts === null || Array.isArray(facts)))
    return args;
  return { ...kept, facts: { ...moved, ...(facts as Record<string, unknown> | undefined) } };
}
