'use strict';

/**
 * Integers from `start` up to but not including `stop`, in steps of `step` (> 0).
 */
function range(start, stop, step = 1) {
  if (step <= 0) {
    throw new RangeError('step must be positive');
  }
  const out = [];
  for (let i = start; i < stop; i += step) {
    out.push(i);
  }
  return out;
}

/**
 * Split an array into consecutive chunks of `size` elements (the last may be shorter).
 */
function chunk(items, size) {
  if (size < 1) {
    throw new RangeError('size must be at least 1');
  }
  const out = [];
  for (let i = 0; i < items.length; i += size) {
    out.push(items.slice(i, i + size));
  }
  return out;
}

/**
 * Limit `value` to the closed interval [lo, hi].
 */
function clamp(value, lo, hi) {
  if (value < lo) {
    return lo;
  }
  if (value > hi) {
    return hi;
  }
  return value;
}

/**
 * Merge overlapping or touching [start, end] intervals; returns them sorted by start.
 */
function mergeIntervals(intervals) {
  const sorted = intervals.map((iv) => [iv[0], iv[1]]).sort((a, b) => a[0] - b[0]);
  const out = [];
  for (const iv of sorted) {
    const last = out[out.length - 1];
    if (last && iv[0] <= last[1]) {
      last[1] = Math.max(last[1], iv[1]);
    } else {
      out.push(iv);
    }
  }
  return out;
}

module.exports = { range, chunk, clamp, mergeIntervals };
