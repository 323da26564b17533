'use strict';

/**
 * Split a URL path into its non-empty segments.
 */
function segments(path) {
  return path.split('/').filter((s) => s.length > 0);
}

/**
 * Match a pattern such as '/users/:id' against a path; returns the params object or null.
 */
function match(pattern, path) {
  const want = segments(pattern);
  const got = segments(path);
  if (want.length !== got.length) {
    return null;
  }
  const params = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(':')) {
      params[want[i].slice(1)] = decodeURIComponent(got[i]);
    } else if (want[i] !== got[i]) {
      return null;
    }
  }
  return params;
}

/**
 * Join path pieces with single slashes; the result always starts with '/'.
 */
function join(...parts) {
  return '/' + parts.flatMap(segments).join('/');
}

module.exports = { segments, match, join };
