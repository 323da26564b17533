'use strict';

/**
 * Round an amount of money to whole cents.
 */
function roundCents(amount) {
  return Math.round(amount * 100) / 100;
}

/**
 * Price after a percentage discount; the percentage must be between 0 and 100.
 */
function discounted(price, percent) {
  if (percent < 0 || percent > 100) {
    throw new RangeError('percent must be between 0 and 100');
  }
  return roundCents(price * (100 - percent) / 100);
}

/**
 * Sales tax owed on `amount` at `rate` (0.2 means 20%), rounded to cents.
 */
function taxFor(amount, rate) {
  return roundCents(amount * rate);
}

module.exports = { roundCents, discounted, taxFor };
