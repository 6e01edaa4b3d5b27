import type { Side } from '../stores/object-store.ts';

/**
 * Well-known tools' user metadata that means the same thing on both stores but is written in a
 * different form on each, rewritten on the way across so the tool reads it back on the other
 * side.
 *
 * Today that is rclone's modification time, user metadata `mtime` on both stores:
 *
 * - S3: seconds since the Unix epoch as a fixed-point decimal string, trailing zeros dropped,
 *   e.g. `1354040105.123456789`, `1354040105`, `-1.5`. rclone's S3 backend writes it with
 *   `swift.TimeToFloatString` and reads it with `swift.FloatStringToTime` under the key
 *   `metaMtime = "mtime"`
 *   (https://github.com/rclone/rclone/blob/master/backend/s3/s3.go). Both helpers work on an
 *   int64 count of nanoseconds, so the form covers 1677-09-21 to 2262-04-11 exactly; a reader
 *   takes any number of fraction digits and truncates them to nine
 *   (`nsToFloatString` / `floatStringToNs`,
 *   https://github.com/ncw/swift/blob/master/meta.go).
 * - Azure: RFC 3339 with nine fraction digits, e.g. `2012-11-27T18:15:05.123456789Z` (or with
 *   the writer's local offset, `...+01:00`). rclone's azureblob backend writes it with
 *   `timeFormatOut = "2006-01-02T15:04:05.000000000Z07:00"` and reads it with
 *   `timeFormatIn = time.RFC3339` under `modTimeKey = "mtime"`
 *   (https://github.com/rclone/rclone/blob/master/backend/azureblob/azureblob.go). Go's RFC 3339
 *   parser takes an optional fraction of any length (truncated to nanoseconds) and `Z` or
 *   `±hh:mm`; years are four digits.
 *
 * Why it matters: mirrored as is, the S3 form does not parse on Azure, and rclone's azureblob
 * backend then reports the zero time (0001-01-01) in `rclone lsl`; the Azure form does not
 * parse on S3 either, where rclone falls back to the object's Last-Modified, which is the time
 * of the mirror copy, not the file's. Translated, both sides report the same instant, exact to
 * the nanosecond: the arithmetic is done on strings and BigInt, never on floating point.
 *
 * Not translated: rclone's S3 `md5chksum` (the base64 MD5 rclone stores as metadata when the
 * ETag is not an MD5, e.g. after a multipart upload). rclone's azureblob backend has no such
 * metadata; it reads the MD5 only from the blob's Content-MD5 property, which is not user
 * metadata, so there is nothing to rewrite it into here. It crosses unchanged and is harmless.
 */

/** One translated name, described for the README. */
export interface ToolMetadataTranslation {
  /** The tool that writes the name. */
  tool: string;
  /** The user metadata name, matched without case. */
  name: string;
  /** The form on S3. */
  s3: string;
  /** The form on Azure. */
  azure: string;
}

/** Which tools' metadata `translateToolMetadata` rewrites, and between which forms. */
export const TRANSLATED_TOOL_METADATA: readonly ToolMetadataTranslation[] = [
  {
    tool: 'rclone',
    name: 'mtime',
    s3: 'seconds since the Unix epoch, fixed point, up to 9 fraction digits (1354040105.123456789)',
    azure:
      'RFC 3339 with 9 fraction digits, UTC when written here (2012-11-27T18:15:05.123456789Z)',
  },
];

const NS_PER_SECOND = 1_000_000_000n;
// rclone keeps the S3 form as an int64 count of nanoseconds (Go's strconv.ParseInt and
// time.UnixNano); anything outside cannot be written or read back in that form.
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function inInt64(ns: bigint): boolean {
  return ns >= INT64_MIN && ns <= INT64_MAX;
}

/**
 * Nanoseconds since the epoch of an S3 `mtime`, or `undefined` when rclone would not read it.
 * Takes what `floatStringToNs` takes in its ordinary form: an optional sign, digits, an
 * optional `.` and fraction digits (at least one digit in all), extra fraction digits
 * truncated. Sign and magnitude, so `-1.5` is 1.5 s before the epoch.
 */
function parseFloatSeconds(value: string): bigint | undefined {
  const match = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(value);
  if (!match) return undefined;
  const [, sign = '', whole = '', fraction = ''] = match;
  if (whole === '' && fraction === '') return undefined;
  const magnitude =
    BigInt(whole === '' ? '0' : whole) * NS_PER_SECOND +
    BigInt(fraction.slice(0, 9).padEnd(9, '0'));
  const ns = sign === '-' ? -magnitude : magnitude;
  return inInt64(ns) ? ns : undefined;
}

/** The S3 form exactly as `nsToFloatString` writes it: sign and magnitude, no trailing zeros. */
function formatFloatSeconds(ns: bigint): string {
  const negative = ns < 0n;
  const magnitude = negative ? -ns : ns;
  const whole = (magnitude / NS_PER_SECOND).toString();
  const fraction = (magnitude % NS_PER_SECOND).toString().padStart(9, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction === '' ? '' : `.${fraction}`}`;
}

function isLeapYear(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return isLeapYear(year) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1;
  const dayOfEra =
    yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

// What Go's time.Parse(time.RFC3339, ...) takes (its fallback parser also takes `,` before
// the fraction). Field ranges are checked below.
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:Z|([+-])(\d{2}):(\d{2}))$/;

/**
 * Nanoseconds since the epoch of an Azure `mtime`, or `undefined` when Go's RFC 3339 parser
 * would refuse it or the instant has no S3 form.
 */
function parseRfc3339(value: string): bigint | undefined {
  const match = RFC3339.exec(value);
  if (!match) return undefined;
  const [, y, mo, d, h, mi, s, fraction = '', offsetSign, offsetHours, offsetMinutes] = match;
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, s].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  let offsetSeconds = 0;
  if (offsetSign !== undefined) {
    const oh = Number(offsetHours);
    const om = Number(offsetMinutes);
    if (oh > 23 || om > 59) return undefined;
    offsetSeconds = (offsetSign === '-' ? -1 : 1) * (oh * 3600 + om * 60);
  }
  // Whole seconds stay below 2^53 for four-digit years, so Number is exact here.
  const seconds =
    daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offsetSeconds;
  const ns = BigInt(seconds) * NS_PER_SECOND + BigInt(fraction.slice(0, 9).padEnd(9, '0'));
  return inInt64(ns) ? ns : undefined;
}

/** The Azure form as rclone's `timeFormatOut` writes it for a UTC time. */
function formatRfc3339Nano(ns: bigint): string {
  let seconds = ns / NS_PER_SECOND;
  let fraction = ns % NS_PER_SECOND;
  // BigInt division truncates toward zero; the date needs the floor.
  if (fraction < 0n) {
    seconds -= 1n;
    fraction += NS_PER_SECOND;
  }
  // Whole seconds of the int64 range (±9.3e9) times 1000 are exact in a Number, and well
  // inside what Date takes; every such year has four digits.
  const wholeSeconds = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return `${wholeSeconds}.${fraction.toString().padStart(9, '0')}Z`;
}

const CONVERT: Record<string, Record<Side, (value: string) => string | undefined>> = {
  // Keyed by the side the value is written for.
  mtime: {
    s3: (azure) => {
      const ns = parseRfc3339(azure);
      return ns === undefined ? undefined : formatFloatSeconds(ns);
    },
    azure: (s3) => {
      const ns = parseFloatSeconds(s3);
      return ns === undefined ? undefined : formatRfc3339Nano(ns);
    },
  },
};

/**
 * A copy of `logical` (user metadata, names as the user wrote them) for writing on `to`, with
 * well-known tools' metadata (`TRANSLATED_TOOL_METADATA`) rewritten from the `from` side's
 * form into the `to` side's. Names are matched without case (S3 returns them lowercased, Azure
 * compares them without case) and kept as they are. A value that is not in the `from` form,
 * or has no `to` form, is kept as is; this never throws. With `from === to` nothing changes.
 */
export function translateToolMetadata(
  from: Side,
  to: Side,
  logical: Record<string, string>,
): Record<string, string> {
  if (from === to) return { ...logical };
  return Object.fromEntries(
    Object.entries(logical).map(([name, value]) => {
      const convert = Object.hasOwn(CONVERT, name.toLowerCase())
        ? CONVERT[name.toLowerCase()]?.[to]
        : undefined;
      return [name, convert?.(value) ?? value];
    }),
  );
}
