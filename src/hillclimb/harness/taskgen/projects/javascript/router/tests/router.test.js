'use strict';

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
