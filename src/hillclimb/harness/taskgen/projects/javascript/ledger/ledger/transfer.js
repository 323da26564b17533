'use strict';

const { InsufficientFunds } = require('./account');

/**
 * Move `amount` from one account to another; nothing changes if the withdrawal fails.
 */
function transfer(from, to, amount) {
  if (from === to) {
    throw new Error('cannot transfer to the same account');
  }
  from.withdraw(amount);
  to.deposit(amount);
  return [from.balance, to.balance];
}

/**
 * Try a list of [from, to, amount] transfers; returns how many succeeded (failed ones are
 * skipped when the payer lacks funds).
 */
function settle(transfers) {
  let done = 0;
  for (const [from, to, amount] of transfers) {
    try {
      transfer(from, to, amount);
      done += 1;
    } catch (err) {
      if (!(err instanceof InsufficientFunds)) {
        throw err;
      }
    }
  }
  return done;
}

module.exports = { transfer, settle };
