import pytest

from ledger import account, bank


def test_deposit():
    a = account.Account("ann")
    assert a.deposit(500) == 500
    with pytest.raises(ValueError):
        a.deposit(0)


def test_withdraw_with_overdraft():
    a = account.Account("ann", balance=100, overdraft=50)
    assert a.withdraw(150) == -50
    with pytest.raises(account.InsufficientFunds):
        a.withdraw(1)


def test_withdraw_positive():
    with pytest.raises(ValueError):
        account.Account("ann", 10).withdraw(-5)


def test_available():
    assert account.Account("x", balance=30, overdraft=20).available() == 50


def test_history():
    a = account.Account("x")
    a.deposit(10)
    a.withdraw(4)
    assert a.history == [("deposit", 10), ("withdraw", 4)]


def test_transfer():
    b = bank.Bank()
    b.open("ann", 100)
    b.open("bob", 5)
    assert b.transfer("ann", "bob", 30) == (70, 35)
    with pytest.raises(ValueError):
        b.transfer("ann", "ann", 1)


def test_open_duplicate():
    b = bank.Bank()
    b.open("ann")
    with pytest.raises(ValueError):
        b.open("ann")


def test_totals_and_richest():
    b = bank.Bank()
    assert b.richest() is None
    b.open("bob", 40)
    b.open("ann", 40)
    b.open("cat", 10)
    assert b.total_deposits() == 90
    assert b.richest() == "ann"
