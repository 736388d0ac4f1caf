/**
 * Fuzzy instance names, in the order users expect from the tool we replace, made stricter: exact,
 * then case-insensitive, then case-insensitive prefix, then substring. The first stage with any match
 * decides; several matches at that stage are an ambiguity, never a guess.
 */

export type NameMatch<T> = { kind: "found"; item: T } | { kind: "ambiguous"; candidates: T[] } | { kind: "none" };

export function matchName<T>(query: string, items: readonly T[], nameOf: (item: T) => string): NameMatch<T> {
  const q = query.trim();
  const lower = q.toLowerCase();
  const stages: Array<(name: string) => boolean> = [
    (n) => n === q,
    (n) => n.toLowerCase() === lower,
    (n) => n.toLowerCase().startsWith(lower),
    (n) => n.toLowerCase().includes(lower),
  ];
  if (!q) return { kind: "none" };
  for (const test of stages) {
    const hits = items.filter((i) => test(nameOf(i)));
    if (hits.length === 1) return { kind: "found", item: hits[0]! };
    if (hits.length > 1) return { kind: "ambiguous", candidates: hits };
  }
  return { kind: "none" };
}

/** "a", "a and b", "a, b and c". */
export function listWords(words: readonly string[]): string {
  if (words.length <= 1) return words.join("");
  return `${words.slice(0, -1).join(", ")} and ${words[words.length - 1]}`;
}
