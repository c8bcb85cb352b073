import type { Script, ScriptedReply } from "./model-server.ts";
import { requestText } from "./observe.ts";

/**
 * A model script for many cases in one harness: each request is answered by the case whose name
 * its text holds, with the number of times that case was asked before. Past `maxCalls` a case
 * answers 400, so a loop shows as a failure rather than a hang.
 */
export function scriptByCase(
  cases: Record<string, (n: number) => ScriptedReply>,
  maxCalls: number,
): { script: Script; calls: (name: string) => number } {
  const used = new Map<string, number>();
  const script: Script = (request) => {
    const text = requestText(request);
    const name = Object.keys(cases).find((c) => text.includes(c));
    if (!name) throw new Error(`no case in "${text}"`);
    const n = used.get(name) ?? 0;
    used.set(name, n + 1);
    if (n > maxCalls) return { status: 400, error: `${name}: too many calls` };
    return (cases[name] as (n: number) => ScriptedReply)(n);
  };
  return { script, calls: (name) => used.get(name) ?? 0 };
}
