import pg from "pg";

/**
 * Baton runs the same few dozen statements over and over: each is sent as a named prepared
 * statement, so Postgres parses and plans it once per connection instead of at every call
 * (about half the round trip of a turn's statement). Distinct texts are capped, so statements
 * built with a varying number of values cannot grow the server's memory without bound.
 */
const MAX_NAMED_STATEMENTS = 400;
const statementNames = new Map<string, string>();
/** Texts whose cached plan went stale (a migration changed a table under a running replica). */
const unnamed = new Set<string>();

function statementFor(text: string, values: readonly unknown[]) {
  if (values.length === 0 || unnamed.has(text)) return { text, values: [...values] };
  let name = statementNames.get(text);
  if (!name && statementNames.size < MAX_NAMED_STATEMENTS) {
    name = `baton_${statementNames.size + 1}`;
    statementNames.set(text, name);
  }
  return name ? { name, text, values: [...values] } : { text, values: [...values] };
}

const preparingClients = new WeakMap<pg.PoolClient, pg.PoolClient>();

/** What BEGIN answers, given at once: the BEGIN itself goes out with the transaction's first statement. */
const BEGUN = { command: "BEGIN", rowCount: null, oid: 0, rows: [], fields: [] };

/**
 * The pool as kysely's dialect takes it: its clients send named prepared statements, and write a
 * transaction's BEGIN and COMMIT with its first and last statements.
 */
export function preparing(pool: pg.Pool) {
  const wrap = (client: pg.PoolClient): pg.PoolClient => {
    let wrapped = preparingClients.get(client);
    if (wrapped) return wrapped;
    // A connection that drops while its client is checked out but between statements (a tool's
    // transaction waiting on its tool, say) is reported as an 'error' event, which, unheard, would
    // end the process. Its next statement fails instead, and the pool discards it on release.
    client.on("error", () => {});
    const send = async (text: string, values: readonly unknown[]) => {
      try {
        return await client.query(statementFor(text, values));
      } catch (error) {
        // "cached plan must not change result type": send this text unprepared from now on.
        if ((error as { code?: string }).code === "0A000") unnamed.add(text);
        throw error;
      }
    };
    // A transaction's BEGIN waits for its first statement and is written with it; a statement
    // marked as its last is written with the COMMIT. A transaction that ends before any statement
    // never reaches the server.
    let beginHeld = false;
    let open = false;
    let committed = false;
    const query = async (text: string, values: readonly unknown[] = []) => {
      const ending = text === "commit" || text === "rollback";
      if (ending && (committed || beginHeld)) {
        // Committed with its last statement already, or never begun: nothing is left to send.
        committed = beginHeld = open = false;
        return { ...BEGUN, command: text.toUpperCase() };
      }
      if (committed) throw new Error("a statement after its transaction's last one");
      if (text === "begin" && !open) {
        beginHeld = open = true;
        return BEGUN;
      }
      const last = open && text.endsWith(LAST_STATEMENT);
      // The BEGIN, the statement and the COMMIT leave in one write: each write to the server's
      // socket wakes it, and on this kind of machine a write is a large share of a statement's CPU.
      const socket = streamOf(client);
      socket?.cork();
      const begin = beginHeld ? send("begin", []) : undefined;
      const statement = send(text, values);
      const end = last ? commit() : undefined;
      socket?.uncork();
      beginHeld = false;
      committed = last;
      if (ending) open = false;
      const [begun, result, ended] = await Promise.allSettled([begin, statement, end]);
      // The statement's own error first: a COMMIT behind it only says the transaction rolled back.
      for (const r of [result, begun, ended]) if (r.status === "rejected") throw r.reason;
      return (result as PromiseFulfilledResult<pg.QueryResult>).value;
    };
    const commit = async () => {
      const done = await client.query("commit");
      if (done.command === "ROLLBACK") throw new Error("the transaction was rolled back");
      return done;
    };
    wrapped = new Proxy(client, {
      get(target, property) {
        if (property === "query") return query;
        const value = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    preparingClients.set(client, wrapped);
    return wrapped;
  };
  return {
    options: pool.options,
    Client: pg.Client,
    connect: async () => wrap(await pool.connect()),
    end: () => pool.end(),
  };
}

/** The client's socket: pg writes each message of a query on it as the query is issued. */
function streamOf(client: pg.PoolClient): { cork(): void; uncork(): void } | undefined {
  const stream = (client as { connection?: { stream?: { cork?(): void; uncork?(): void } } })
    .connection?.stream;
  return stream?.cork && stream.uncork ? (stream as { cork(): void; uncork(): void }) : undefined;
}

/** Marks a transaction's last statement: it is sent with the COMMIT, in one round trip. */
const LAST_STATEMENT = "\n-- the transaction's last statement: commit with it";

/** `text` as its transaction's last statement (see `preparing`); nothing may follow it. */
export function lastStatement(text: string): string {
  return `${text}${LAST_STATEMENT}`;
}
