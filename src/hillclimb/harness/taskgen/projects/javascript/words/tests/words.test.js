'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const words = require('../text/words');

test('countWords', () => {
  assert.equal(words.countWords('  the quick  brown fox '), 4);
  assert.equal(words.countWords('   '), 0);
  assert.equal(words.countWords('one'), 1);
});

test('titleCase', () => {
  assert.equal(words.titleCase('hello wORLD'), 'Hello World');
  assert.equal(words.titleCase('a  b'), 'A  B');
});

test('wrap fills lines greedily', () => {
  assert.deepEqual(words.wrap('the quick brown fox jumps', 10), ['the quick', 'brown fox', 'jumps']);
  assert.deepEqual(words.wrap('abc de', 6), ['abc de']);
  assert.deepEqual(words.wrap('', 5), []);
});

test('wrap rejects a zero width', () => {
  assert.throws(() => words.wrap('a b', 0), RangeError);
});

test('truncate adds an ellipsis', () => {
  assert.equal(words.truncate('hello world', 8), 'hello...');
  assert.equal(words.truncate('short', 5), 'short');
  assert.equal(words.truncate('sixsix', 5), 'si...');
});

test('frequencies counts words case-insensitively', () => {
  assert.deepEqual(words.frequencies('To be or not TO be'), { to: 2, be: 2, or: 1, not: 1 });
});
