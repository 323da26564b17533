'use strict';

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
