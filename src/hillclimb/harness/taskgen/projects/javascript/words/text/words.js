'use strict';

/**
 * Number of whitespace-separated words in `text`.
 */
function countWords(text) {
  const trimmed = text.trim();
  if (trimmed === '') {
    return 0;
  }
  return trimmed.split(/\s+/).length;
}

/**
 * Upper-case the first letter of every word, lower-case the rest.
 */
function titleCase(text) {
  return text
    .split(' ')
    .map((w) => (w.length > 0 ? w[0].toUpperCase() + w.slice(1).toLowerCase() : w))
    .join(' ');
}

/**
 * Greedy word wrap: lines of at most `width` characters (a longer word gets its own line).
 */
function wrap(text, width) {
  if (width < 1) {
    throw new RangeError('width must be at least 1');
  }
  const lines = [];
  let current = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (current === '') {
      current = word;
    } else if (current.length + 1 + word.length <= width) {
      current = current + ' ' + word;
    } else {
      lines.push(current);
      current = word;
    }
  }
  if (current !== '') {
    lines.push(current);
  }
  return lines;
}

/**
 * Shorten `text` to at most `max` characters, ending with '...' when it was cut.
 */
function truncate(text, max) {
  if (text.length <= max) {
    return text;
  }
  return text.slice(0, max - 3) + '...';
}

/**
 * Map each word (lower-cased) to how often it occurs.
 */
function frequencies(text) {
  const counts = {};
  for (const word of text.toLowerCase().split(/\s+/).filter(Boolean)) {
    counts[word] = (counts[word] || 0) + 1;
  }
  return counts;
}

module.exports = { countWords, titleCase, wrap, truncate, frequencies };
