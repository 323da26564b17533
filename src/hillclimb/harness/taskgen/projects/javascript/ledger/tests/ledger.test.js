'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Account, InsufficientFunds } = require('../ledger/account');
const ledger = require('../ledger/transfer');

test('deposit and withdraw', () => {
  const a = new Account('ann', 10);
  assert.equal(a.deposit(5), 15);
  assert.equal(a.withdraw(15), 0);
});

test('invalid amounts are rejected', () => {
  const a = new Account('ann', 10);
  assert.throws(() => a.deposit(0), RangeError);
  assert.throws(() => a.withdraw(-3), RangeError);
});

test('overdraft raises InsufficientFunds', () => {
  const a = new Account('ann', 10);
  assert.throws(() => a.withdraw(11), InsufficientFunds);
  assert.equal(a.balance, 10);
});

test('totalDeposited ignores withdrawals', () => {
  const a = new Account('ann');
  a.deposit(4);
  a.deposit(6);
  a.withdraw(3);
  assert.equal(a.totalDeposited(), 10);
});

test('transfer moves money', () => {
  const a = new Account('ann', 10);
  const b = new Account('bob', 1);
  assert.deepEqual(ledger.transfer(a, b, 4), [6, 5]);
  assert.throws(() => ledger.transfer(a, a, 1));
});

test('settle skips transfers without funds', () => {
  const a = new Account('ann', 5);
  const b = new Account('bob', 0);
  assert.equal(ledger.settle([[a, b, 3], [b, a, 10], [a, b, 2]]), 2);
  assert.equal(a.balance, 0);
  assert.equal(b.balance, 5);
});
