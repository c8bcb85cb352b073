import { validate as isValidCron } from "node-cron";

const FIELDS = [
  { name: "minute", range: "0–59" },
  { name: "hour", range: "0–23" },
  { name: "day of the month", range: "1–31" },
  { name: "month", range: "1–12 or jan–dec" },
  { name: "weekday", range: "0–7 or sun–sat" },
] as const;

const EXAMPLE = 'e.g. "0 9 * * 1-5"';

/**
 * What is wrong with the digest's schedule, if anything: the count of its fields (node-cron also
 * takes a leading seconds field, which would silently shift every other), or the first field out
 * of its range, named, as "0 25 * * *" has a 25th hour.
 */
export function cronScheduleProblem(schedule: string): string | undefined {
  const fields = schedule.trim().split(/\s+/);
  if (fields.length !== FIELDS.length)
    return `"${schedule}" is not a 5-field cron expression (minute hour day month weekday): it has ${fields.length}; ${EXAMPLE}`;
  if (isValidCron(schedule)) return undefined;
  // Each field tried alone, the others any: the first refused is the one to mend.
  const bad = fields.findIndex(
    (field, i) => !isValidCron(FIELDS.map((_, j) => (j === i ? field : "*")).join(" ")),
  );
  const where = FIELDS[bad];
  return where
    ? `"${schedule}": "${fields[bad]}" is not a valid ${where.name} (${where.range}); ${EXAMPLE}`
    : `"${schedule}" is not a cron expression node-cron can read (minute hour day month weekday); ${EXAMPLE}`;
}
