'use strict';

const { roundCents, taxFor } = require('./pricing');

class Cart {
  constructor() {
    this.lines = new Map();
  }

  /**
   * Add `qty` units of an item; qty must be a positive integer. Returns the new quantity.
   */
  add(sku, price, qty = 1) {
    if (!Number.isInteger(qty) || qty <= 0) {
      throw new TypeError('qty must be a positive integer');
    }
    const line = this.lines.get(sku);
    if (line) {
      line.qty += qty;
      return line.qty;
    }
    this.lines.set(sku, { price, qty });
    return qty;
  }

  /**
   * Remove up to `qty` units of an item; the line disappears when nothing is left.
   */
  remove(sku, qty) {
    const line = this.lines.get(sku);
    if (!line) {
      return 0;
    }
    const left = line.qty - qty;
    if (left <= 0) {
      this.lines.delete(sku);
      return 0;
    }
    line.qty = left;
    return left;
  }

  /**
   * Number of units in the cart.
   */
  count() {
    let n = 0;
    for (const line of this.lines.values()) {
      n += line.qty;
    }
    return n;
  }

  /**
   * Sum of price times quantity over all lines, rounded to cents.
   */
  subtotal() {
    let sum = 0;
    for (const line of this.lines.values()) {
      sum += line.price * line.qty;
    }
    return roundCents(sum);
  }

  /**
   * Subtotal plus tax at `rate`.
   */
  total(rate) {
    const sub = this.subtotal();
    return roundCents(sub + taxFor(sub, rate));
  }
}

module.exports = { Cart };
