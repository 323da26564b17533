"""The generator's JavaScript library: small, realistic, tested Node.js projects (CommonJS).

Why this shape (see corpus.py for the Python twin and the licensing reason): every project is
ours, needs no npm packages (only `node:test` and `node:assert`, built into Node >= 18), and
validates in a sandbox in a fraction of a second. Conventions the generator relies on, so that a
token-level mutator (no JS AST library is available) stays exact:

- each function or method carries a JSDoc comment (`/** ... */`), used as the specification in
  bug reports and feature requests;
- top-level functions are `function name(a, b) { ... }` declarations exported with
  `module.exports = { ... };`, methods live in `class` bodies;
- tests are flat top-level `test('name', () => { ... });` blocks in `tests/<project>.test.js`,
  with unique names, so a test can be removed from the visible copy by its id
  `tests/<project>.test.js::name`.
"""

from __future__ import annotations

JS_PROJECTS: dict[str, dict[str, str]] = {}

JS_PROJECTS["cart"] = {
    "cart/pricing.js": r"""'use strict';

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
""",
    "cart/cart.js": r"""'use strict';

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
""",
    "tests/cart.test.js": r"""'use strict';

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
""",
}

JS_PROJECTS["semver"] = {
    "semver/semver.js": r"""'use strict';

/**
 * Parse 'MAJOR.MINOR.PATCH' into { major, minor, patch }; throws on anything else.
 */
function parse(text) {
  const parts = text.trim().split('.');
  if (parts.length !== 3) {
    throw new SyntaxError(`invalid version: ${text}`);
  }
  const nums = parts.map((p) => Number(p));
  if (nums.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new SyntaxError(`invalid version: ${text}`);
  }
  return { major: nums[0], minor: nums[1], patch: nums[2] };
}

/**
 * Compare two version strings: -1 if a < b, 0 if equal, 1 if a > b.
 */
function compare(a, b) {
  const x = parse(a);
  const y = parse(b);
  for (const key of ['major', 'minor', 'patch']) {
    if (x[key] > y[key]) {
      return 1;
    }
    if (x[key] < y[key]) {
      return -1;
    }
  }
  return 0;
}

/**
 * Increment one part ('major', 'minor' or 'patch'), resetting the lower parts to zero.
 */
function bump(version, part) {
  const v = parse(version);
  if (part === 'major') {
    return `${v.major + 1}.0.0`;
  }
  if (part === 'minor') {
    return `${v.major}.${v.minor + 1}.0`;
  }
  if (part === 'patch') {
    return `${v.major}.${v.minor}.${v.patch + 1}`;
  }
  throw new Error(`unknown part: ${part}`);
}

/**
 * Caret range check: `version` satisfies `^base` when it has the same major version and is
 * not lower than base.
 */
function satisfiesCaret(version, base) {
  const v = parse(version);
  const b = parse(base);
  return v.major === b.major && compare(version, base) >= 0;
}

/**
 * The highest version of a list, or null for an empty list.
 */
function maxVersion(versions) {
  let best = null;
  for (const v of versions) {
    if (best === null || compare(v, best) > 0) {
      best = v;
    }
  }
  return best;
}

module.exports = { parse, compare, bump, satisfiesCaret, maxVersion };
""",
    "tests/semver.test.js": r"""'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const semver = require('../semver/semver');

test('parse splits parts', () => {
  assert.deepEqual(semver.parse('1.2.3'), { major: 1, minor: 2, patch: 3 });
  assert.deepEqual(semver.parse(' 0.10.0 '), { major: 0, minor: 10, patch: 0 });
});

test('parse rejects malformed versions', () => {
  assert.throws(() => semver.parse('1.2'), SyntaxError);
  assert.throws(() => semver.parse('1.2.x'), SyntaxError);
  assert.throws(() => semver.parse('1.-2.3'), SyntaxError);
});

test('compare orders versions', () => {
  assert.equal(semver.compare('1.2.3', '1.2.3'), 0);
  assert.equal(semver.compare('1.10.0', '1.9.9'), 1);
  assert.equal(semver.compare('0.1.0', '0.1.1'), -1);
  assert.equal(semver.compare('2.0.0', '10.0.0'), -1);
});

test('bump resets lower parts', () => {
  assert.equal(semver.bump('1.2.3', 'major'), '2.0.0');
  assert.equal(semver.bump('1.2.3', 'minor'), '1.3.0');
  assert.equal(semver.bump('1.2.3', 'patch'), '1.2.4');
  assert.throws(() => semver.bump('1.2.3', 'build'));
});

test('satisfiesCaret', () => {
  assert.equal(semver.satisfiesCaret('1.4.0', '1.2.3'), true);
  assert.equal(semver.satisfiesCaret('1.2.3', '1.2.3'), true);
  assert.equal(semver.satisfiesCaret('1.2.2', '1.2.3'), false);
  assert.equal(semver.satisfiesCaret('2.0.0', '1.2.3'), false);
});

test('maxVersion picks the highest', () => {
  assert.equal(semver.maxVersion(['1.0.0', '1.10.0', '1.9.0']), '1.10.0');
  assert.equal(semver.maxVersion([]), null);
});
""",
}

JS_PROJECTS["csv"] = {
    "csvlite/csv.js": r"""'use strict';

/**
 * Split one CSV line into fields; double quotes protect commas and '""' is a literal quote.
 */
function parseLine(line) {
  const fields = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') {
        quoted = false;
      } else {
        field += ch;
      }
    } else if (ch === '"') {
      quoted = true;
    } else if (ch === ',') {
      fields.push(field);
      field = '';
    } else {
      field += ch;
    }
  }
  fields.push(field);
  return fields;
}

/**
 * Parse CSV text with a header row into an array of objects; blank lines are skipped.
 */
function parse(text) {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) {
    return [];
  }
  const header = parseLine(lines[0]);
  const rows = [];
  for (let r = 1; r < lines.length; r++) {
    const values = parseLine(lines[r]);
    const row = {};
    for (let c = 0; c < header.length; c++) {
      row[header[c]] = c < values.length ? values[c] : '';
    }
    rows.push(row);
  }
  return rows;
}

/**
 * Quote a field when it contains a comma, a quote or a newline.
 */
function quoteField(value) {
  const s = String(value);
  if (s.includes(',') || s.includes('"') || s.includes('\n')) {
    return '"' + s.split('"').join('""') + '"';
  }
  return s;
}

/**
 * Render rows (arrays of values) as CSV text, one line per row.
 */
function stringify(rows) {
  return rows.map((row) => row.map(quoteField).join(',')).join('\n');
}

module.exports = { parseLine, parse, quoteField, stringify };
""",
    "tests/csv.test.js": r''''use strict';

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
''',
}

JS_PROJECTS["heap"] = {
    "pqueue/heap.js": r"""'use strict';

/** A binary min-heap ordered by a key function. */
class MinHeap {
  constructor(key = (x) => x) {
    this.key = key;
    this.items = [];
  }

  /**
   * Number of items in the heap.
   */
  size() {
    return this.items.length;
  }

  /**
   * The smallest item without removing it (undefined when empty).
   */
  peek() {
    return this.items[0];
  }

  /**
   * Insert an item, restoring the heap order by sifting it up.
   */
  push(item) {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = Math.floor((i - 1) / 2);
      if (this.key(a[parent]) <= this.key(a[i])) {
        break;
      }
      [a[parent], a[i]] = [a[i], a[parent]];
      i = parent;
    }
  }

  /**
   * Remove and return the smallest item (undefined when empty).
   */
  pop() {
    const a = this.items;
    if (a.length === 0) {
      return undefined;
    }
    const top = a[0];
    const last = a.pop();
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.key(a[l]) < this.key(a[m])) {
          m = l;
        }
        if (r < a.length && this.key(a[r]) < this.key(a[m])) {
          m = r;
        }
        if (m === i) {
          break;
        }
        [a[m], a[i]] = [a[i], a[m]];
        i = m;
      }
    }
    return top;
  }
}

module.exports = { MinHeap };
""",
    "pqueue/scheduler.js": r"""'use strict';

const { MinHeap } = require('./heap');

/**
 * Order jobs ({ name, priority }) by ascending priority; ties keep their input order.
 */
function schedule(jobs) {
  const heap = new MinHeap((e) => e.priority * 1000000 + e.seq);
  jobs.forEach((job, seq) => heap.push({ ...job, seq }));
  const out = [];
  while (heap.size() > 0) {
    out.push(heap.pop().name);
  }
  return out;
}

/**
 * The `k` smallest numbers of a list, in ascending order.
 */
function smallest(values, k) {
  if (k < 0) {
    throw new RangeError('k must be non-negative');
  }
  const heap = new MinHeap();
  for (const v of values) {
    heap.push(v);
  }
  const out = [];
  while (out.length < k && heap.size() > 0) {
    out.push(heap.pop());
  }
  return out;
}

module.exports = { schedule, smallest };
""",
    "tests/heap.test.js": r"""'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { MinHeap } = require('../pqueue/heap');
const scheduler = require('../pqueue/scheduler');

test('heap pops in ascending order', () => {
  const h = new MinHeap();
  for (const v of [5, 3, 8, 1, 9, 2, 7]) {
    h.push(v);
  }
  const out = [];
  while (h.size() > 0) {
    out.push(h.pop());
  }
  assert.deepEqual(out, [1, 2, 3, 5, 7, 8, 9]);
});

test('heap peek and empty pop', () => {
  const h = new MinHeap();
  assert.equal(h.pop(), undefined);
  h.push(4);
  h.push(2);
  assert.equal(h.peek(), 2);
  assert.equal(h.size(), 2);
});

test('heap with a key function', () => {
  const h = new MinHeap((w) => w.length);
  ['ccc', 'a', 'bb'].forEach((w) => h.push(w));
  assert.equal(h.pop(), 'a');
  assert.equal(h.pop(), 'bb');
});

test('schedule orders by priority and keeps ties stable', () => {
  const jobs = [
    { name: 'b', priority: 2 },
    { name: 'a', priority: 1 },
    { name: 'c', priority: 2 },
    { name: 'd', priority: 0 },
  ];
  assert.deepEqual(scheduler.schedule(jobs), ['d', 'a', 'b', 'c']);
});

test('smallest returns the k smallest', () => {
  assert.deepEqual(scheduler.smallest([9, 4, 7, 1, 8], 3), [1, 4, 7]);
  assert.deepEqual(scheduler.smallest([2, 1], 5), [1, 2]);
  assert.deepEqual(scheduler.smallest([3], 0), []);
  assert.throws(() => scheduler.smallest([1], -1), RangeError);
});
""",
}

JS_PROJECTS["words"] = {
    "text/words.js": r"""'use strict';

/**
 * Number of whitespace-separated words in `text`.
 */
function countWords(text) {
  const trimmed = text.trim();
  if (trimmed === '') {
    return 0;
  }
  return trimmed.split(/\s+/).length;
}

/**
 * Upper-case the first letter of every word, lower-case the rest.
 */
function titleCase(text) {
  return text
    .split(' ')
    .map((w) => (w.length > 0 ? w[0].toUpperCase() + w.slice(1).toLowerCase() : w))
    .join(' ');
}

/**
 * Greedy word wrap: lines of at most `width` characters (a longer word gets its own line).
 */
function wrap(text, width) {
  if (width < 1) {
    throw new RangeError('width must be at least 1');
  }
  const lines = [];
  let current = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (current === '') {
      current = word;
    } else if (current.length + 1 + word.length <= width) {
      current = current + ' ' + word;
    } else {
      lines.push(current);
      current = word;
    }
  }
  if (current !== '') {
    lines.push(current);
  }
  return lines;
}

/**
 * Shorten `text` to at most `max` characters, ending with '...' when it was cut.
 */
function truncate(text, max) {
  if (text.length <= max) {
    return text;
  }
  return text.slice(0, max - 3) + '...';
}

/**
 * Map each word (lower-cased) to how often it occurs.
 */
function frequencies(text) {
  const counts = {};
  for (const word of text.toLowerCase().split(/\s+/).filter(Boolean)) {
    counts[word] = (counts[word] || 0) + 1;
  }
  return counts;
}

module.exports = { countWords, titleCase, wrap, truncate, frequencies };
""",
    "tests/words.test.js": r"""'use strict';

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
""",
}

JS_PROJECTS["ranges"] = {
    "ranges/range.js": r"""'use strict';

/**
 * Integers from `start` up to but not including `stop`, in steps of `step` (> 0).
 */
function range(start, stop, step = 1) {
  if (step <= 0) {
    throw new RangeError('step must be positive');
  }
  const out = [];
  for (let i = start; i < stop; i += step) {
    out.push(i);
  }
  return out;
}

/**
 * Split an array into consecutive chunks of `size` elements (the last may be shorter).
 */
function chunk(items, size) {
  if (size < 1) {
    throw new RangeError('size must be at least 1');
  }
  const out = [];
  for (let i = 0; i < items.length; i += size) {
    out.push(items.slice(i, i + size));
  }
  return out;
}

/**
 * Limit `value` to the closed interval [lo, hi].
 */
function clamp(value, lo, hi) {
  if (value < lo) {
    return lo;
  }
  if (value > hi) {
    return hi;
  }
  return value;
}

/**
 * Merge overlapping or touching [start, end] intervals; returns them sorted by start.
 */
function mergeIntervals(intervals) {
  const sorted = intervals.map((iv) => [iv[0], iv[1]]).sort((a, b) => a[0] - b[0]);
  const out = [];
  for (const iv of sorted) {
    const last = out[out.length - 1];
    if (last && iv[0] <= last[1]) {
      last[1] = Math.max(last[1], iv[1]);
    } else {
      out.push(iv);
    }
  }
  return out;
}

module.exports = { range, chunk, clamp, mergeIntervals };
""",
    "tests/ranges.test.js": r"""'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const r = require('../ranges/range');

test('range counts up to stop', () => {
  assert.deepEqual(r.range(0, 4), [0, 1, 2, 3]);
  assert.deepEqual(r.range(1, 10, 3), [1, 4, 7]);
  assert.deepEqual(r.range(5, 5), []);
});

test('range rejects a non-positive step', () => {
  assert.throws(() => r.range(0, 3, 0), RangeError);
});

test('chunk splits evenly and keeps the remainder', () => {
  assert.deepEqual(r.chunk([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
  assert.deepEqual(r.chunk([], 3), []);
  assert.throws(() => r.chunk([1], 0), RangeError);
});

test('clamp', () => {
  assert.equal(r.clamp(5, 0, 10), 5);
  assert.equal(r.clamp(-2, 0, 10), 0);
  assert.equal(r.clamp(12, 0, 10), 10);
  assert.equal(r.clamp(10, 0, 10), 10);
});

test('mergeIntervals joins overlaps', () => {
  assert.deepEqual(r.mergeIntervals([[5, 7], [1, 3], [2, 4], [7, 9]]), [[1, 4], [5, 9]]);
  assert.deepEqual(r.mergeIntervals([[1, 2], [4, 5]]), [[1, 2], [4, 5]]);
  assert.deepEqual(r.mergeIntervals([]), []);
});
""",
}

JS_PROJECTS["ledger"] = {
    "ledger/account.js": r"""'use strict';

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
""",
    "ledger/transfer.js": r"""'use strict';

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
""",
    "tests/ledger.test.js": r"""'use strict';

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
""",
}

JS_PROJECTS["router"] = {
    "router/path.js": r"""'use strict';

/**
 * Split a URL path into its non-empty segments.
 */
function segments(path) {
  return path.split('/').filter((s) => s.length > 0);
}

/**
 * Match a pattern such as '/users/:id' against a path; returns the params object or null.
 */
function match(pattern, path) {
  const want = segments(pattern);
  const got = segments(path);
  if (want.length !== got.length) {
    return null;
  }
  const params = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(':')) {
      params[want[i].slice(1)] = decodeURIComponent(got[i]);
    } else if (want[i] !== got[i]) {
      return null;
    }
  }
  return params;
}

/**
 * Join path pieces with single slashes; the result always starts with '/'.
 */
function join(...parts) {
  return '/' + parts.flatMap(segments).join('/');
}

module.exports = { segments, match, join };
""",
    "router/router.js": r"""'use strict';

const { match } = require('./path');

class Router {
  constructor() {
    this.routes = [];
  }

  /**
   * Register a handler for a method and a path pattern; returns the router for chaining.
   */
  add(method, pattern, handler) {
    this.routes.push({ method: method.toUpperCase(), pattern, handler });
    return this;
  }

  /**
   * Find the first route matching method and path: { handler, params } or null.
   */
  resolve(method, path) {
    for (const route of this.routes) {
      if (route.method !== method.toUpperCase()) {
        continue;
      }
      const params = match(route.pattern, path);
      if (params !== null) {
        return { handler: route.handler, params };
      }
    }
    return null;
  }

  /**
   * Call the matching handler with the params, or return 404 when nothing matches.
   */
  dispatch(method, path) {
    const found = this.resolve(method, path);
    if (found === null) {
      return 404;
    }
    return found.handler(found.params);
  }
}

module.exports = { Router };
""",
    "tests/router.test.js": r"""'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('../router/path');
const { Router } = require('../router/router');

test('segments drops empty parts', () => {
  assert.deepEqual(path.segments('//a/b/'), ['a', 'b']);
  assert.deepEqual(path.segments('/'), []);
});

test('match extracts params', () => {
  assert.deepEqual(path.match('/users/:id', '/users/42'), { id: '42' });
  assert.deepEqual(path.match('/a/:x/b/:y', '/a/1/b/two%20words'), { x: '1', y: 'two words' });
});

test('match rejects other paths', () => {
  assert.equal(path.match('/users/:id', '/users'), null);
  assert.equal(path.match('/users/:id', '/posts/1'), null);
});

test('join normalises slashes', () => {
  assert.equal(path.join('/api/', 'v1', '/users'), '/api/v1/users');
  assert.equal(path.join(), '/');
});

test('router resolves by method and pattern', () => {
  const r = new Router().add('get', '/users/:id', (p) => `user ${p.id}`).add('POST', '/users', () => 'created');
  assert.equal(r.dispatch('GET', '/users/7'), 'user 7');
  assert.equal(r.dispatch('post', '/users'), 'created');
  assert.equal(r.dispatch('DELETE', '/users/7'), 404);
  assert.equal(r.resolve('GET', '/nope'), null);
});
""",
}

JS_PROJECTS["stats"] = {
    "mathx/stats.js": r"""'use strict';

/**
 * Arithmetic mean; throws on an empty list.
 */
function mean(values) {
  if (values.length === 0) {
    throw new Error('mean of an empty list');
  }
  let sum = 0;
  for (const v of values) {
    sum += v;
  }
  return sum / values.length;
}

/**
 * Middle value of the sorted list (the mean of the two middle values for even lengths).
 */
function median(values) {
  if (values.length === 0) {
    throw new Error('median of an empty list');
  }
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  if (s.length % 2 === 1) {
    return s[mid];
  }
  return (s[mid - 1] + s[mid]) / 2;
}

/**
 * Population variance: the mean squared distance from the mean.
 */
function variance(values) {
  const m = mean(values);
  let acc = 0;
  for (const v of values) {
    acc += (v - m) * (v - m);
  }
  return acc / values.length;
}

/**
 * The most frequent value; ties go to the value seen first.
 */
function mode(values) {
  const counts = new Map();
  let best = undefined;
  let bestCount = 0;
  for (const v of values) {
    const c = (counts.get(v) || 0) + 1;
    counts.set(v, c);
    if (c > bestCount) {
      best = v;
      bestCount = c;
    }
  }
  return best;
}

/**
 * Linearly rescale values to [0, 1] (all zeros when every value is the same).
 */
function normalize(values) {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  if (hi === lo) {
    return values.map(() => 0);
  }
  return values.map((v) => (v - lo) / (hi - lo));
}

module.exports = { mean, median, variance, mode, normalize };
""",
    "tests/stats.test.js": r"""'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const stats = require('../mathx/stats');

test('mean', () => {
  assert.equal(stats.mean([1, 2, 3, 4]), 2.5);
  assert.throws(() => stats.mean([]));
});

test('median of odd and even lists', () => {
  assert.equal(stats.median([3, 1, 2]), 2);
  assert.equal(stats.median([4, 1, 3, 2]), 2.5);
  assert.equal(stats.median([10, 2, 33, 4, 5]), 5);
  assert.throws(() => stats.median([]));
});

test('variance', () => {
  assert.equal(stats.variance([2, 4, 4, 4, 5, 5, 7, 9]), 4);
  assert.equal(stats.variance([3]), 0);
});

test('mode prefers the first of a tie', () => {
  assert.equal(stats.mode([1, 2, 2, 3, 3]), 2);
  assert.equal(stats.mode(['a']), 'a');
  assert.equal(stats.mode([]), undefined);
});

test('normalize rescales to the unit interval', () => {
  assert.deepEqual(stats.normalize([2, 4, 6]), [0, 0.5, 1]);
  assert.deepEqual(stats.normalize([5, 5]), [0, 0]);
});
""",
}
