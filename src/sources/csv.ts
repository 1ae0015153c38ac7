/**
 * An incremental RFC 4180 parser: quoted fields, `""` escaped quotes, delimiters and newlines inside quotes,
 * CRLF / LF / CR record ends (also split across chunks), a leading BOM. Lenient where files in the wild are
 * (as Python's csv module): a quote inside an unquoted field is kept literally, text after a closing quote is
 * appended. Blank lines are skipped. An unterminated quote at the end is an error.
 */
import { GlimpseError } from '../errors/index.js';

const State = {
  /** At the start of a field. */
  FieldStart: 0,
  /** Inside an unquoted field. */
  Unquoted: 1,
  /** Inside a quoted field. */
  Quoted: 2,
  /** Just read a quote inside a quoted field: an escaped quote or the field's end. */
  QuoteInQuoted: 3,
} as const;
type State = (typeof State)[keyof typeof State];

/**
 * Parses CSV (or TSV with `'\t'`) text pushed in chunks into records of fields.
 *
 * @example
 *   const p = new CsvParser();
 *   p.push('url,caption\r\nhttp://x/a.jpg,"a ""quoted"", multi\nline caption"\r\n'); // [['url', 'caption'], ['http://x/a.jpg', 'a "quoted", multi\nline caption']]
 *   p.end(); // []
 */
export class CsvParser {
  private state: State = State.FieldStart;
  private field = '';
  private record: string[] = [];
  private started = false;
  /** The previous chunk ended with CR: a LF at the start of the next one belongs to it. */
  private afterCr = false;
  /** 1-based line of the current position, for messages. */
  private line = 1;

  constructor(
    private readonly delimiter = ',',
    private readonly name = 'the CSV input',
  ) {
    if (delimiter.length !== 1 || delimiter === '"' || delimiter === '\n' || delimiter === '\r') {
      throw new GlimpseError(
        'GLIMPSE_E_ARG_INVALID',
        `Expected a one-character delimiter other than a quote or newline but received ${JSON.stringify(delimiter)}`,
      );
    }
  }

  /** Parses a chunk; returns the records it completed. */
  push(chunk: string): string[][] {
    const out: string[][] = [];
    let text = chunk;
    if (!this.started) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const d = this.delimiter;
    let i = 0;
    if (this.afterCr) {
      this.afterCr = false;
      if (text[0] === '\n') i = 1;
    }
    let fieldStart = -1;
    const flushRun = (end: number): void => {
      if (fieldStart >= 0) {
        this.field += text.slice(fieldStart, end);
        fieldStart = -1;
      }
    };
    for (; i < text.length; i++) {
      const c = text[i]!;
      switch (this.state) {
        case State.FieldStart:
          if (c === '"') {
            this.state = State.Quoted;
          } else if (c === d) {
            this.record.push('');
          } else if (c === '\n' || c === '\r') {
            this.endRecord(out);
            i = this.skipLf(text, i, c);
          } else {
            this.state = State.Unquoted;
            fieldStart = i;
          }
          break;
        case State.Unquoted:
          if (c === d) {
            flushRun(i);
            this.record.push(this.field);
            this.field = '';
            this.state = State.FieldStart;
          } else if (c === '\n' || c === '\r') {
            flushRun(i);
            this.endRecord(out);
            i = this.skipLf(text, i, c);
          } else if (fieldStart < 0) fieldStart = i;
          break;
        case State.Quoted:
          if (c === '"') {
            flushRun(i);
            this.state = State.QuoteInQuoted;
          } else {
            if (c === '\n') this.line++;
            if (fieldStart < 0) fieldStart = i;
          }
          break;
        case State.QuoteInQuoted:
          if (c === '"') {
            this.field += '"';
            this.state = State.Quoted;
          } else if (c === d) {
            this.record.push(this.field);
            this.field = '';
            this.state = State.FieldStart;
          } else if (c === '\n' || c === '\r') {
            this.endRecord(out);
            i = this.skipLf(text, i, c);
          } else {
            // Text after a closing quote: kept, as Python's csv does.
            this.state = State.Unquoted;
            fieldStart = i;
          }
          break;
      }
    }
    flushRun(text.length);
    return out;
  }

  /** Ends the input: the last record (without a final newline), or an error for an open quote. */
  end(): string[][] {
    const out: string[][] = [];
    if (this.state === State.Quoted) {
      throw new GlimpseError(
        'GLIMPSE_E_SOURCE_MANIFEST_INVALID',
        `Expected a closing quote in ${this.name} but the input ends inside a quoted field (opened at or before line ${this.line})`,
      );
    }
    if (this.state !== State.FieldStart || this.record.length > 0) this.endRecord(out);
    return out;
  }

  private endRecord(out: string[][]): void {
    this.record.push(this.field);
    this.field = '';
    this.state = State.FieldStart;
    this.line++;
    const r = this.record;
    this.record = [];
    if (r.length === 1 && r[0] === '') return; // blank line
    out.push(r);
  }

  /** After a CR or LF at `i`: skips the LF of a CRLF (remembering a CR at the chunk's end). */
  private skipLf(text: string, i: number, c: string): number {
    if (c !== '\r') return i;
    if (i + 1 < text.length) return text[i + 1] === '\n' ? i + 1 : i;
    this.afterCr = true;
    return i;
  }
}

/**
 * Parses a whole CSV text (convenience for small inputs and tests).
 *
 * @example
 *   parseCsv('a,b\n1,"x,y"\n'); // [['a', 'b'], ['1', 'x,y']]
 */
export function parseCsv(text: string, delimiter = ','): string[][] {
  const p = new CsvParser(delimiter);
  return [...p.push(text), ...p.end()];
}
