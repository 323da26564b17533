"""A bank: accounts by owner, transfers, statements."""

from ledger.account import Account


class Bank:
    def __init__(self):
        self.accounts = {}

    def open(self, owner, balance=0, overdraft=0):
        """Open an account; owners are unique."""
        if owner in self.accounts:
            raise ValueError(f"{owner} already has an account")
        self.accounts[owner] = Account(owner, balance, overdraft)
        return self.accounts[owner]

    def transfer(self, source, target, amount):
        """Move money between two accounts."""
        if source == target:
            raise ValueError("cannot transfer to the same account")
        src = self.accounts[source]
        dst = self.accounts[target]
        src.withdraw(amount)
        dst.deposit(amount)
        return src.balance, dst.balance

    def total_deposits(self):
        """Sum of all balances."""
        return sum(acc.balance for acc in self.accounts.values())

    def richest(self):
        """Owner with the largest balance (alphabetically first on ties)."""
        if not self.accounts:
            return None
        return min(self.accounts, key=lambda o: (-self.accounts[o].balance, o))
