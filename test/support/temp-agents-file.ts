import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before } from "node:test";

/**
 * The path of an agents file of the calling suite's own, in a folder made before its tests and
 * removed after: what a test writes and reloads as an operator edits theirs. Call it in a
 * describe's body.
 */
export function tempAgentsFile(prefix: string): string {
  const dir = path.join(tmpdir(), `${prefix}${randomBytes(6).toString("hex")}`);
  before(async () => {
    await mkdir(dir, { recursive: true });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  return path.join(dir, "agents.yml");
}
