'use strict';

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
