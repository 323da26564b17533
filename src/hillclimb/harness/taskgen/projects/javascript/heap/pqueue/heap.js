'use strict';

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
