'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const r = require('../ranges/range');

test('range counts up to stop', () => {
  assert.deepEqual(r.range(0, 4), [0, 1, 2, 3]);
  assert.deepEqual(r.range(1, 10, 3), [1, 4, 7]);
  assert.deepEqual(r.range(5, 5), []);
});

test('range rejects a non-positive step', () => {
  assert.throws(() => r.range(0, 3, 0), RangeError);
});

test('chunk splits evenly and keeps the remainder', () => {
  assert.deepEqual(r.chunk([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
  assert.deepEqual(r.chunk([], 3), []);
  assert.throws(() => r.chunk([1], 0), RangeError);
});

test('clamp', () => {
  assert.equal(r.clamp(5, 0, 10), 5);
  assert.equal(r.clamp(-2, 0, 10), 0);
  assert.equal(r.clamp(12, 0, 10), 10);
  assert.equal(r.clamp(10, 0, 10), 10);
});

test('mergeIntervals joins overlaps', () => {
  assert.deepEqual(r.mergeIntervals([[5, 7], [1, 3], [2, 4], [7, 9]]), [[1, 4], [5, 9]]);
  assert.deepEqual(r.mergeIntervals([[1, 2], [4, 5]]), [[1, 2], [4, 5]]);
  assert.deepEqual(r.mergeIntervals([]), []);
});
