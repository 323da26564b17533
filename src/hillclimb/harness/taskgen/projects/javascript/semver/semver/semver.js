'use strict';

/**
 * Parse 'MAJOR.MINOR.PATCH' into { major, minor, patch }; throws on anything else.
 */
function parse(text) {
  const parts = text.trim().split('.');
  if (parts.length !== 3) {
    throw new SyntaxError(`invalid version: ${text}`);
  }
  const nums = parts.map((p) => Number(p));
  if (nums.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new SyntaxError(`invalid version: ${text}`);
  }
  return { major: nums[0], minor: nums[1], patch: nums[2] };
}

/**
 * Compare two version strings: -1 if a < b, 0 if equal, 1 if a > b.
 */
function compare(a, b) {
  const x = parse(a);
  const y = parse(b);
  for (const key of ['major', 'minor', 'patch']) {
    if (x[key] > y[key]) {
      return 1;
    }
    if (x[key] < y[key]) {
      return -1;
    }
  }
  return 0;
}

/**
 * Increment one part ('major', 'minor' or 'patch'), resetting the lower parts to zero.
 */
function bump(version, part) {
  const v = parse(version);
  if (part === 'major') {
    return `${v.major + 1}.0.0`;
  }
  if (part === 'minor') {
    return `${v.major}.${v.minor + 1}.0`;
  }
  if (part === 'patch') {
    return `${v.major}.${v.minor}.${v.patch + 1}`;
  }
  throw new Error(`unknown part: ${part}`);
}

/**
 * Caret range check: `version` satisfies `^base` when it has the same major version and is
 * not lower than base.
 */
function satisfiesCaret(version, base) {
  const v = parse(version);
  const b = parse(base);
  return v.major === b.major && compare(version, base) >= 0;
}

/**
 * The highest version of a list, or null for an empty list.
 */
function maxVersion(versions) {
  let best = null;
  for (const v of versions) {
    if (best === null || compare(v, best) > 0) {
      best = v;
    }
  }
  return best;
}

module.exports = { parse, compare, bump, satisfiesCaret, maxVersion };
