'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const stats = require('../mathx/stats');

test('mean', () => {
  assert.equal(stats.mean([1, 2, 3, 4]), 2.5);
  assert.throws(() => stats.mean([]));
});

test('median of odd and even lists', () => {
  assert.equal(stats.median([3, 1, 2]), 2);
  assert.equal(stats.median([4, 1, 3, 2]), 2.5);
  assert.equal(stats.median([10, 2, 33, 4, 5]), 5);
  assert.throws(() => stats.median([]));
});

test('variance', () => {
  assert.equal(stats.variance([2, 4, 4, 4, 5, 5, 7, 9]), 4);
  assert.equal(stats.variance([3]), 0);
});

test('mode prefers the first of a tie', () => {
  assert.equal(stats.mode([1, 2, 2, 3, 3]), 2);
  assert.equal(stats.mode(['a']), 'a');
  assert.equal(stats.mode([]), undefined);
});

test('normalize rescales to the unit interval', () => {
  assert.deepEqual(stats.normalize([2, 4, 6]), [0, 0.5, 1]);
  assert.deepEqual(stats.normalize([5, 5]), [0, 0]);
});
