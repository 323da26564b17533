'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { MinHeap } = require('../pqueue/heap');
const scheduler = require('../pqueue/scheduler');

test('heap pops in ascending order', () => {
  const h = new MinHeap();
  for (const v of [5, 3, 8, 1, 9, 2, 7]) {
    h.push(v);
  }
  const out = [];
  while (h.size() > 0) {
    out.push(h.pop());
  }
  assert.deepEqual(out, [1, 2, 3, 5, 7, 8, 9]);
});

test('heap peek and empty pop', () => {
  const h = new MinHeap();
  assert.equal(h.pop(), undefined);
  h.push(4);
  h.push(2);
  assert.equal(h.peek(), 2);
  assert.equal(h.size(), 2);
});

test('heap with a key function', () => {
  const h = new MinHeap((w) => w.length);
  ['ccc', 'a', 'bb'].forEach((w) => h.push(w));
  assert.equal(h.pop(), 'a');
  assert.equal(h.pop(), 'bb');
});

test('schedule orders by priority and keeps ties stable', () => {
  const jobs = [
    { name: 'b', priority: 2 },
    { name: 'a', priority: 1 },
    { name: 'c', priority: 2 },
    { name: 'd', priority: 0 },
  ];
  assert.deepEqual(scheduler.schedule(jobs), ['d', 'a', 'b', 'c']);
});

test('smallest returns the k smallest', () => {
  assert.deepEqual(scheduler.smallest([9, 4, 7, 1, 8], 3), [1, 4, 7]);
  assert.deepEqual(scheduler.smallest([2, 1], 5), [1, 2]);
  assert.deepEqual(scheduler.smallest([3], 0), []);
  assert.throws(() => scheduler.smallest([1], -1), RangeError);
});
