'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const pricing = require('../cart/pricing');
const { Cart } = require('../cart/cart');

test('roundCents rounds to two decimals', () => {
  assert.equal(pricing.roundCents(1.005 * 1000), 1005);
  assert.equal(pricing.roundCents(2.345), 2.35);
});

test('discounted applies the percentage', () => {
  assert.equal(pricing.discounted(80, 25), 60);
  assert.equal(pricing.discounted(10, 0), 10);
  assert.equal(pricing.discounted(10, 100), 0);
});

test('discounted rejects bad percentages', () => {
  assert.throws(() => pricing.discounted(10, 101), RangeError);
  assert.throws(() => pricing.discounted(10, -1), RangeError);
});

test('taxFor', () => {
  assert.equal(pricing.taxFor(50, 0.2), 10);
  assert.equal(pricing.taxFor(9.99, 0.07), 0.7);
});

test('add accumulates quantities', () => {
  const c = new Cart();
  assert.equal(c.add('a', 2), 1);
  assert.equal(c.add('a', 2, 3), 4);
  assert.throws(() => c.add('b', 1, 0), TypeError);
  assert.throws(() => c.add('b', 1, 1.5), TypeError);
});

test('remove drops empty lines', () => {
  const c = new Cart();
  c.add('a', 1, 3);
  assert.equal(c.remove('a', 1), 2);
  assert.equal(c.remove('a', 2), 0);
  assert.equal(c.count(), 0);
  assert.equal(c.remove('zzz', 1), 0);
});

test('count and subtotal', () => {
  const c = new Cart();
  c.add('a', 1.25, 2);
  c.add('b', 3, 1);
  assert.equal(c.count(), 3);
  assert.equal(c.subtotal(), 5.5);
});

test('total includes tax', () => {
  const c = new Cart();
  c.add('a', 10, 2);
  assert.equal(c.total(0.1), 22);
});
