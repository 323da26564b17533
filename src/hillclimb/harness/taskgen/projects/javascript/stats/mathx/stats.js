'use strict';

/**
 * Arithmetic mean; throws on an empty list.
 */
function mean(values) {
  if (values.length === 0) {
    throw new Error('mean of an empty list');
  }
  let sum = 0;
  for (const v of values) {
    sum += v;
  }
  return sum / values.length;
}

/**
 * Middle value of the sorted list (the mean of the two middle values for even lengths).
 */
function median(values) {
  if (values.length === 0) {
    throw new Error('median of an empty list');
  }
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  if (s.length % 2 === 1) {
    return s[mid];
  }
  return (s[mid - 1] + s[mid]) / 2;
}

/**
 * Population variance: the mean squared distance from the mean.
 */
function variance(values) {
  const m = mean(values);
  let acc = 0;
  for (const v of values) {
    acc += (v - m) * (v - m);
  }
  return acc / values.length;
}

/**
 * The most frequent value; ties go to the value seen first.
 */
function mode(values) {
  const counts = new Map();
  let best = undefined;
  let bestCount = 0;
  for (const v of values) {
    const c = (counts.get(v) || 0) + 1;
    counts.set(v, c);
    if (c > bestCount) {
      best = v;
      bestCount = c;
    }
  }
  return best;
}

/**
 * Linearly rescale values to [0, 1] (all zeros when every value is the same).
 */
function normalize(values) {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  if (hi === lo) {
    return values.map(() => 0);
  }
  return values.map((v) => (v - lo) / (hi - lo));
}

module.exports = { mean, median, variance, mode, normalize };
