import { randomUUID } from "node:crypto";
import {
  Agent,
  type CallModelInputFilter,
  type FunctionTool,
  type Handoff,
  handoff,
  OpenAIProvider,
  type RunContext,
  Runner,
  setTracingDisabled,
  tool,
} from "@openai/agents";
import bolt from "@slack/bolt";
import type { WebClient } from "@slack/web-api";
import OpenAI from "openai";
import type pg from "pg";
import { flowReplies } from "../../scripts/bench-chain.ts";
import type { AgentConfig } from "../../src/config/agents-schema.ts";
import { handBackNoteSchema, handoffNoteSchema } from "../../src/core/handoffs/note.ts";
import { demoTools } from "../../src/domain/demo-tools.ts";
import { handoffCard } from "../../src/slack/views/handoff-card.ts";
import { agentReply } from "../../src/slack/views/task-message.ts";
import { freePort } from "../../test/support/harness.ts";
import {
  type RecordedRequest,
  scriptByAgent,
  scriptedCompletions,
} from "../../test/support/model-server.ts";
import { type Contender, compare, ORDERS, type Setup, SIGNING_SECRET } from "./measure.ts";

/**
 * `npm run bench:compare`: flow 1's chain played by the OpenAI Agents SDK, wired into Slack by hand
 * as a developer would: Bolt receives the mention, one `Runner.run` plays the chain (SDK handoffs
 * between the agents of scripts/bench-agents.yml, the hand-back a handoff to the agent that handed
 * over), each agent message and a handoff card go to Slack through Bolt's WebClient, and the run's
 * conversation is saved to Postgres at every turn. The tools are Baton's demo tools, the same SQL.
 */

/** What each run carries: where its Slack thread is, and its posts, sent in order off the run's path. */
interface Thread {
  channel: string;
  threadTs: string;
  client: WebClient;
  posts: Promise<unknown>;
}

type Persona = Pick<AgentConfig, "name" | "icon">;

function post(thread: Thread, persona: Persona, message: { text: string; blocks: unknown[] }) {
  thread.posts = thread.posts.then(() =>
    thread.client.chat.postMessage({
      channel: thread.channel,
      thread_ts: thread.threadTs,
      text: message.text,
      blocks: message.blocks as never,
      username: persona.name,
      icon_emoji: persona.icon,
    }),
  );
}

function functionTools(setup: Setup): Map<string, FunctionTool<Thread>> {
  const tools = new Map<string, FunctionTool<Thread>>();
  for (const def of demoTools) {
    tools.set(
      def.name,
      tool({
        name: def.name,
        description: def.description,
        parameters: def.input as never,
        async execute(input, context, details) {
          const result = await def.run(
            {
              tx: setup.database.db,
              // The model's call id: a retried run reuses it, so the demo's writes happen once.
              idempotencyKey: details?.toolCall?.callId ?? randomUUID(),
              taskId: (context?.context as Thread | undefined)?.threadTs ?? "",
              agentId: "",
            },
            input,
          );
          return JSON.stringify(result);
        },
      }) as FunctionTool<Thread>,
    );
  }
  return tools;
}

function buildAgents(setup: Setup): Agent<Thread> {
  const tools = functionTools(setup);
  const configs = setup.agentsFile.agents;
  const agents = new Map(
    configs.map((c) => [
      c.id,
      new Agent<Thread>({
        name: c.name,
        instructions: c.instructions,
        model: c.model ?? setup.agentsFile.defaults.model,
        tools: c.tools.map((name) => {
          const t = tools.get(name);
          if (!t) throw new Error(`no tool ${name}`);
          return t;
        }),
        // Routes the scripted replies; a real deployment would set it for OpenAI's prompt cache.
        modelSettings: { providerData: { prompt_cache_key: c.id } },
      }),
    ]),
  );
  const agentOf = (id: string) => {
    const agent = agents.get(id);
    if (!agent) throw new Error(`no agent ${id}`);
    return agent;
  };
  const handoffs = new Map<string, Handoff<Thread>[]>();
  const add = (id: string, h: Handoff<Thread>) =>
    handoffs.set(id, [...(handoffs.get(id) ?? []), h]);
  for (const from of configs) {
    for (const toId of from.handoffs) {
      const to = configs.find((c) => c.id === toId);
      if (!to) throw new Error(`no agent ${toId}`);
      add(
        from.id,
        handoff(agentOf(to.id), {
          toolNameOverride: `transfer_to_${to.id.replaceAll("-", "_")}`,
          toolDescriptionOverride: `Hand the task to ${to.name} with a short note: summary, what you did, what is needed, and the facts they need.`,
          inputType: handoffNoteSchema as never,
          onHandoff: (context: RunContext<Thread>, note: unknown) =>
            post(
              context.context,
              from,
              handoffCard({
                fromName: from.name,
                toName: to.name,
                kind: "transfer",
                note: handoffNoteSchema.parse(note),
              }),
            ),
        }) as Handoff<Thread>,
      );
      // SDK handoffs are fixed at build time: each agent hands back to the one agent that hands to it.
      if (configs.some((c) => c.id !== from.id && c.handoffs.includes(toId)))
        throw new Error(`${toId} has two agents to hand back to`);
      add(
        to.id,
        handoff(agentOf(from.id), {
          toolNameOverride: "hand_back",
          toolDescriptionOverride:
            "Your part is done: return the task, with the result and facts, to the agent that handed it to you.",
          inputType: handBackNoteSchema as never,
          onHandoff: (context: RunContext<Thread>, note: unknown) =>
            post(
              context.context,
              to,
              handoffCard({
                fromName: to.name,
                toName: from.name,
                kind: "hand_back",
                note: handBackNoteSchema.parse(note),
              }),
            ),
        }) as Handoff<Thread>,
      );
    }
  }
  for (const [id, list] of handoffs) agentOf(id).handoffs = list;
  const entry = setup.agentsFile.defaults.entry_agent ?? configs[0]?.id;
  if (!entry) throw new Error("no entry agent");
  return agentOf(entry);
}

/** The conversation so far and whose turn it is, upserted before every model call: a turn's durability. */
const SAVE = `insert into sdk_runs (thread_ts, agent, items, updated_at) values ($1, $2, $3, now())
  on conflict (thread_ts) do update set agent = excluded.agent, items = excluded.items, updated_at = now()`;

/**
 * The SDK's OpenAI client: the real one for the model server, or, in-process, one whose
 * `chat.completions.create` answers from the same script with no transport, as Baton's in-process
 * bench skips its client. The SDK still builds each request and reads each answer as it does.
 */
function openAIClient(setup: Setup): { client: OpenAI; requests?: RecordedRequest[] } {
  if (setup.model === "http")
    return { client: new OpenAI({ apiKey: "sk-bench-not-a-real-key", baseURL: setup.modelUrl }) };
  const model = scriptedCompletions(scriptByAgent(flowReplies(ORDERS)));
  const create = async (body: Parameters<typeof model.complete>[0]) => {
    const answer = await model.complete(body);
    if (answer.status !== 200) throw new Error(`scripted model: ${JSON.stringify(answer.body)}`);
    return answer.body;
  };
  const client = { baseURL: "in-process", chat: { completions: { create } } };
  return { client: client as unknown as OpenAI, requests: model.requests };
}

async function start(setup: Setup): Promise<Contender> {
  setTracingDisabled(true);
  const { client, requests } = openAIClient(setup);
  const modelProvider = new OpenAIProvider({ openAIClient: client, useResponses: false });
  const pool: pg.Pool = setup.database.pool;
  await pool.query(`create table sdk_runs (thread_ts text primary key, agent text not null,
    items jsonb not null, updated_at timestamptz not null)`);
  const entry = buildAgents(setup);
  const saveTurn: CallModelInputFilter = async ({ modelData, agent, context }) => {
    await pool.query(SAVE, [
      (context as Thread).threadTs,
      agent.name,
      JSON.stringify(modelData.input),
    ]);
    return modelData;
  };
  const runner = new Runner({ callModelInputFilter: saveTurn, modelProvider });
  const entryConfig = setup.agentsFile.agents.find((a) => a.name === entry.name) as Persona;

  const running = new Map<string, Promise<void>>();
  const app = new bolt.App({
    token: "xoxb-test",
    signingSecret: SIGNING_SECRET,
    clientOptions: { slackApiUrl: setup.slackUrl },
    logLevel: bolt.LogLevel.ERROR,
  });
  app.event("app_mention", async ({ event, client }) => {
    const thread: Thread = {
      channel: event.channel,
      threadTs: event.thread_ts ?? event.ts,
      client,
      posts: Promise.resolve(),
    };
    const work = (async () => {
      const text = event.text.replace(/<@[A-Z0-9]+>/g, "").trim();
      const result = await runner.run(entry, text, { context: thread, maxTurns: 20 });
      const last = result.lastAgent;
      await pool.query(SAVE, [thread.threadTs, last?.name ?? "", JSON.stringify(result.history)]);
      const persona = setup.agentsFile.agents.find((a) => a.name === last?.name) ?? entryConfig;
      post(thread, persona, agentReply({ text: String(result.finalOutput ?? "") }));
      await thread.posts;
    })();
    running.set(thread.threadTs, work);
    await work;
  });
  app.error(async (error) => {
    console.error("agents-sdk chain failed:", error.original ?? error);
  });
  const port = await freePort();
  await app.start(port);
  return {
    endpoint: `http://127.0.0.1:${port}/slack/events`,
    async settled(threadTs) {
      await running.get(threadTs);
      running.delete(threadTs);
    },
    ...(requests && { modelRequests: requests }),
    stop: () => app.stop() as Promise<void>,
  };
}

await compare(
  "agents_sdk",
  {
    "in-process": "OpenAI Agents SDK, scripted model in-process, state saved each turn",
    http: "OpenAI Agents SDK, model over HTTP through the real openai client, state saved each turn",
  },
  start,
);
