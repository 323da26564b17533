'use strict';

class InsufficientFunds extends Error {}

class Account {
  constructor(owner, balance = 0) {
    this.owner = owner;
    this.balance = balance;
    this.history = [];
  }

  /**
   * Add a positive amount; returns the new balance.
   */
  deposit(amount) {
    if (amount <= 0) {
      throw new RangeError('deposit must be positive');
    }
    this.balance += amount;
    this.history.push(amount);
    return this.balance;
  }

  /**
   * Take a positive amount out; throws InsufficientFunds when the balance is too low.
   */
  withdraw(amount) {
    if (amount <= 0) {
      throw new RangeError('withdrawal must be positive');
    }
    if (amount > this.balance) {
      throw new InsufficientFunds(`${this.owner} cannot withdraw ${amount}`);
    }
    this.balance -= amount;
    this.history.push(-amount);
    return this.balance;
  }

  /**
   * Sum of all deposits ever made.
   */
  totalDeposited() {
    return this.history.filter((x) => x > 0).reduce((a, b) => a + b, 0);
  }
}

module.exports = { Account, InsufficientFunds };
