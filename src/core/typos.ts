/**
 * How far a typed word is from a known one, for a typo read as what it meant: a `/baton` verb, an
 * agent's name. Optimal string alignment: insertions, deletions, substitutions and adjacent swaps.
 */
export function typoDistance(a: string, b: string): number {
  // A few letters longer or shorter, it is no typo: a pasted paragraph costs nothing.
  if (Math.abs(a.length - b.length) > 2) return Number.POSITIVE_INFINITY;
  const at = (row: number[] | undefined, j: number) => row?.[j] ?? Number.POSITIVE_INFINITY;
  const rows = [Array.from({ length: b.length + 1 }, (_, j) => j)];
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const swapped = i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1];
      row[j] = Math.min(
        at(rows[i - 1], j) + 1,
        at(row, j - 1) + 1,
        at(rows[i - 1], j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1),
        swapped ? at(rows[i - 2], j - 2) + 1 : Number.POSITIVE_INFINITY,
      );
    }
    rows.push(row);
  }
  return at(rows[a.length], b.length);
}

/**
 * The one of `known` that `word` is a typo of: one of its spellings (`spellings`) within
 * `allowed(spelling)` typos of `word`, and nearer than any other's. None when two are as near:
 * a guess between them would be a coin toss.
 */
export function nearestOf<T>(
  word: string,
  known: readonly T[],
  spellings: (k: T) => readonly string[],
  allowed: (spelling: string) => number,
): T | undefined {
  const distance = (k: T) =>
    Math.min(
      ...spellings(k).map((s) => {
        const d = typoDistance(word, s);
        return d <= allowed(s) ? d : Number.POSITIVE_INFINITY;
      }),
    );
  const scored = known
    .map((k) => ({ k, d: distance(k) }))
    .filter(({ d }) => Number.isFinite(d))
    .sort((a, b) => a.d - b.d);
  const [best, next] = scored;
  return best && best.d !== next?.d ? best.k : undefined;
}
