'use strict';

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
