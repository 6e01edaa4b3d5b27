/**
 * Compiles a key pattern to a RegExp: `*` matches within one path segment, `**` across
 * segments, `?` one character; everything else is literal. `raw/**` matches every key under
 * `raw/`; `**\/*.tmp` every key ending in `.tmp`.
 */
export function globToRegExp(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i] ?? '';
    if (char === '*' && pattern[i + 1] === '*') {
      // `**/` also matches no segment at all, so `**/x` matches `x`.
      if (pattern[i + 2] === '/') {
        source += '(?:.*/)?';
        i += 2;
      } else {
        source += '.*';
        i += 1;
      }
    } else if (char === '*') {
      source += '[^/]*';
    } else if (char === '?') {
      source += '[^/]';
    } else {
      source += char.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`, 's');
}

/** Whether a key passes include (any, when given) and exclude (none) patterns. */
export function keySelected(key: string, include: RegExp[], exclude: RegExp[]): boolean {
  if (include.length > 0 && !include.some((pattern) => pattern.test(key))) return false;
  return !exclude.some((pattern) => pattern.test(key));
}
