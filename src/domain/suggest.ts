/** Levenshtein distance: insertions, deletions and substitutions, each costing one. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * The candidate a mistyped word most likely meant, or null when none is close:
 * at most a third of the word's letters differ (at least one; case is ignored),
 * and a word that is a known one's prefix or suffix of three or more letters counts as close.
 */
export function closest(word: string, candidates: Iterable<string>): string | null {
  const w = word.toLowerCase();
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const lower = c.toLowerCase();
    const d = editDistance(w, lower);
    const limit = Math.max(1, Math.floor(Math.max(w.length, lower.length) / 3));
    // A shortened name ("eval" for "evaluation.days") ranks after every near spelling.
    const partial = w.length >= 3 && (lower.startsWith(w) || lower.endsWith(w)) ? 100 + d : Infinity;
    const score = d <= limit ? d : partial;
    if (score < bestDistance) {
      best = c;
      bestDistance = score;
    }
  }
  return best;
}

/** `; did you mean "x"?` for a message, or nothing. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const c = closest(word, candidates);
  return c === null ? '' : `; did you mean "${c}"?`;
}
