'use strict';

const { MinHeap } = require('./heap');

/**
 * Order jobs ({ name, priority }) by ascending priority; ties keep their input order.
 */
function schedule(jobs) {
  const heap = new MinHeap((e) => e.priority * 1000000 + e.seq);
  jobs.forEach((job, seq) => heap.push({ ...job, seq }));
  const out = [];
  while (heap.size() > 0) {
    out.push(heap.pop().name);
  }
  return out;
}

/**
 * The `k` smallest numbers of a list, in ascending order.
 */
function smallest(values, k) {
  if (k < 0) {
    throw new RangeError('k must be non-negative');
  }
  const heap = new MinHeap();
  for (const v of values) {
    heap.push(v);
  }
  const out = [];
  while (out.length < k && heap.size() > 0) {
    out.push(heap.pop());
  }
  return out;
}

module.exports = { schedule, smallest };
