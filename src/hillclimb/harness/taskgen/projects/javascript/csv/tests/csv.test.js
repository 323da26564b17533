'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const csv = require('../csvlite/csv');

test('parseLine splits plain fields', () => {
  assert.deepEqual(csv.parseLine('a,b,,c'), ['a', 'b', '', 'c']);
});

test('parseLine honours quotes', () => {
  assert.deepEqual(csv.parseLine('"x, y",z'), ['x, y', 'z']);
  assert.deepEqual(csv.parseLine('"say ""hi""",1'), ['say "hi"', '1']);
});

test('parse builds objects from the header', () => {
  const rows = csv.parse('name,age\nann,31\n\nbob,42\n');
  assert.deepEqual(rows, [{ name: 'ann', age: '31' }, { name: 'bob', age: '42' }]);
});

test('parse fills missing fields', () => {
  assert.deepEqual(csv.parse('a,b,c\n1'), [{ a: '1', b: '', c: '' }]);
  assert.deepEqual(csv.parse(''), []);
});

test('quoteField escapes when needed', () => {
  assert.equal(csv.quoteField('plain'), 'plain');
  assert.equal(csv.quoteField('a,b'), '"a,b"');
  assert.equal(csv.quoteField('say "hi"'), '"say ""hi"""');
  assert.equal(csv.quoteField(7), '7');
});

test('stringify round-trips through parseLine', () => {
  const text = csv.stringify([['a', 'b,c'], [1, 'q"']]);
  assert.equal(text, 'a,"b,c"\n1,"q"""');
  assert.deepEqual(csv.parseLine(text.split('\n')[1]), ['1', 'q"']);
});
