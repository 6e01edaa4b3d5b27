import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TRANSLATED_TOOL_METADATA, translateToolMetadata } from '../../src/core/tool-metadata.ts';

const NS = 1_000_000_000n;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** What rclone's S3 backend would store for `ns` (swift's `nsToFloatString`). */
function s3Form(ns: bigint): string {
  const magnitude = ns < 0n ? -ns : ns;
  const fraction = (magnitude % NS).toString().padStart(9, '0').replace(/0+$/, '');
  return `${ns < 0n ? '-' : ''}${magnitude / NS}${fraction ? `.${fraction}` : ''}`;
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b < 0n ? q - 1n : q;
}

/** `ns` rendered at a UTC offset of `offsetMinutes`, as rclone's `timeFormatOut` would. */
function azureForm(ns: bigint, offsetMinutes = 0): string {
  const seconds = floorDiv(ns, NS);
  const fraction = (ns - seconds * NS).toString().padStart(9, '0');
  const local = new Date(Number(seconds) * 1000 + offsetMinutes * 60_000).toISOString();
  const abs = Math.abs(offsetMinutes);
  const zone =
    offsetMinutes === 0
      ? 'Z'
      : `${offsetMinutes < 0 ? '-' : '+'}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  return `${local.slice(0, 19)}.${fraction}${zone}`;
}

const toAzure = (value: string) => translateToolMetadata('s3', 'azure', { mtime: value }).mtime;
const toS3 = (value: string) => translateToolMetadata('azure', 's3', { mtime: value }).mtime;

describe('Function: translateToolMetadata', () => {
  it('rewrites rclone mtime from S3 seconds to Azure RFC 3339 with nine fraction digits', () => {
    // The example in ncw/swift's TimeToFloatString documentation.
    expect(toAzure('1354040105.123456789')).toBe('2012-11-27T18:15:05.123456789Z');
    expect(toAzure('1354040105.5')).toBe('2012-11-27T18:15:05.500000000Z');
    expect(toAzure('1354040105')).toBe('2012-11-27T18:15:05.000000000Z');
    expect(toAzure('0')).toBe('1970-01-01T00:00:00.000000000Z');
    expect(toAzure('0.000000001')).toBe('1970-01-01T00:00:00.000000001Z');
  });

  it('rewrites rclone mtime from Azure RFC 3339 to S3 seconds, trailing zeros dropped', () => {
    expect(toS3('2012-11-27T18:15:05.123456789Z')).toBe('1354040105.123456789');
    expect(toS3('2012-11-27T18:15:05.500000000Z')).toBe('1354040105.5');
    expect(toS3('2012-11-27T18:15:05.000000000Z')).toBe('1354040105');
    expect(toS3('2012-11-27T18:15:05Z')).toBe('1354040105');
    expect(toS3('2012-11-27T18:15:05.1Z')).toBe('1354040105.1');
  });

  it('applies the UTC offset rclone writes when the file time was local', () => {
    expect(toS3('2012-11-27T19:15:05.123456789+01:00')).toBe('1354040105.123456789');
    expect(toS3('2012-11-27T13:45:05.123456789-04:30')).toBe('1354040105.123456789');
    expect(toS3('2012-11-28T00:15:05+06:00')).toBe('1354040105');
  });

  it('round trips whole and fractional seconds both ways byte for byte', () => {
    for (const s3 of ['1354040105.123456789', '1354040105', '1700000000.000000001', '0.1']) {
      const azure = toAzure(s3);
      expect(azure).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
      expect(toS3(azure ?? '')).toBe(s3);
    }
    for (const azure of ['2012-11-27T18:15:05.123456789Z', '2012-11-27T18:15:05.000000000Z']) {
      expect(toAzure(toS3(azure) ?? '')).toBe(azure);
    }
  });

  it('handles times before 1970 as rclone does: a signed magnitude', () => {
    expect(toAzure('-1.5')).toBe('1969-12-31T23:59:58.500000000Z');
    expect(toS3('1969-12-31T23:59:58.500000000Z')).toBe('-1.5');
    expect(toAzure('-0.000000001')).toBe('1969-12-31T23:59:59.999999999Z');
    expect(toS3('1969-12-31T23:59:59.999999999Z')).toBe('-0.000000001');
    expect(toS3('1900-01-01T00:00:00Z')).toBe('-2208988800');
    expect(toAzure('-2208988800')).toBe('1900-01-01T00:00:00.000000000Z');
  });

  it('translates up to the int64 nanosecond limits of the S3 form and not beyond', () => {
    expect(toAzure('9223372036.854775807')).toBe('2262-04-11T23:47:16.854775807Z');
    expect(toS3('2262-04-11T23:47:16.854775807Z')).toBe('9223372036.854775807');
    expect(toAzure('-9223372036.854775808')).toBe('1677-09-21T00:12:43.145224192Z');
    expect(toS3('1677-09-21T00:12:43.145224192Z')).toBe('-9223372036.854775808');
    // One nanosecond further has no S3 form, so it stays as it is.
    expect(toAzure('9223372036.854775808')).toBe('9223372036.854775808');
    expect(toS3('2262-04-11T23:47:16.854775808Z')).toBe('2262-04-11T23:47:16.854775808Z');
    expect(toS3('1677-09-21T00:12:43.145224191Z')).toBe('1677-09-21T00:12:43.145224191Z');
    expect(toS3('0001-01-01T00:00:00Z')).toBe('0001-01-01T00:00:00Z');
    expect(toS3('9999-12-31T23:59:59Z')).toBe('9999-12-31T23:59:59Z');
  });

  it('truncates fraction digits past nanoseconds, as both rclone readers do', () => {
    expect(toAzure('1.1234567899')).toBe('1970-01-01T00:00:01.123456789Z');
    expect(toS3('1970-01-01T00:00:01.1234567899Z')).toBe('1.123456789');
    expect(toAzure('-1.1234567899')).toBe('1969-12-31T23:59:58.876543211Z');
  });

  it('takes the other spellings rclone reads', () => {
    // floatStringToNs: no fraction digits, no whole digits, a plus sign, leading zeros.
    expect(toAzure('1.')).toBe('1970-01-01T00:00:01.000000000Z');
    expect(toAzure('.5')).toBe('1970-01-01T00:00:00.500000000Z');
    expect(toAzure('+1.5')).toBe('1970-01-01T00:00:01.500000000Z');
    expect(toAzure('0001')).toBe('1970-01-01T00:00:01.000000000Z');
    // Go's RFC 3339 parser: a comma before the fraction, leap days.
    expect(toS3('1970-01-01T00:00:01,5Z')).toBe('1.5');
    expect(toS3('2024-02-29T00:00:00Z')).toBe('1709164800');
    expect(toS3('2000-02-29T00:00:00Z')).toBe('951782400');
  });

  it('leaves a value that is not in the source form unchanged', () => {
    for (const bad of [
      '',
      ' 1',
      '1 ',
      '.',
      '-',
      'abc',
      '1e9',
      '0x10',
      '1.2.3',
      '1_000',
      '１２３',
      '2012-11-27T18:15:05Z',
    ]) {
      expect(toAzure(bad)).toBe(bad);
    }
    for (const bad of [
      '',
      '1354040105.5',
      '2012-11-27',
      '2012-11-27T18:15:05',
      '2012-11-27 18:15:05Z',
      '2012-11-27t18:15:05Z',
      '2012-11-27T18:15:05z',
      '2012-11-27T18:15:05.Z',
      '2012-11-27T18:15:05+0100',
      '2012-11-27T18:15:05+24:00',
      '2012-11-27T18:15:05+01:60',
      '2012-11-27T24:00:00Z',
      '2012-11-27T18:60:00Z',
      '2012-12-31T23:59:60Z',
      '2012-13-01T00:00:00Z',
      '2012-00-01T00:00:00Z',
      '2012-11-00T00:00:00Z',
      '2012-11-31T00:00:00Z',
      '2023-02-29T00:00:00Z',
      '1900-02-29T00:00:00Z',
      '+2012-11-27T18:15:05Z',
      '12012-11-27T18:15:05Z',
    ]) {
      expect(toS3(bad)).toBe(bad);
    }
  });

  it('matches the name without case and keeps its spelling', () => {
    expect(
      translateToolMetadata('azure', 's3', { MTime: '2012-11-27T18:15:05.123456789Z' }),
    ).toEqual({ MTime: '1354040105.123456789' });
    expect(translateToolMetadata('s3', 'azure', { MTIME: '1354040105' })).toEqual({
      MTIME: '2012-11-27T18:15:05.000000000Z',
    });
  });

  it('leaves unrelated metadata untouched, md5chksum included', () => {
    const logical = {
      mtime: '1354040105.5',
      atime: '1354040105.5',
      btime: '2012-11-27T18:15:05Z',
      mtime_backup: '1354040105.5',
      md5chksum: '1B2M2Y8AsgTpgAmY7PhCfg==',
      owner: 'alice',
      s3az_origin: 's3',
    };
    expect(translateToolMetadata('s3', 'azure', logical)).toEqual({
      ...logical,
      mtime: '2012-11-27T18:15:05.500000000Z',
    });
  });

  it('returns a new record and does not change its argument', () => {
    const logical = { mtime: '1354040105.5', other: 'x' };
    const out = translateToolMetadata('s3', 'azure', logical);
    expect(out).not.toBe(logical);
    expect(logical).toEqual({ mtime: '1354040105.5', other: 'x' });
    const empty = translateToolMetadata('azure', 's3', {});
    expect(empty).toEqual({});
  });

  it('changes nothing when both sides are the same', () => {
    for (const side of ['s3', 'azure'] as const) {
      for (const mtime of ['1354040105.5', '2012-11-27T18:15:05.500000000Z']) {
        expect(translateToolMetadata(side, side, { mtime, other: 'x' })).toEqual({
          mtime,
          other: 'x',
        });
      }
    }
  });

  it('round trips every int64 nanosecond instant exactly', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: INT64_MIN, max: INT64_MAX }), (ns) => {
        const s3 = s3Form(ns);
        const azure = toAzure(s3);
        expect(azure).toBe(azureForm(ns));
        // Independent check of the calendar arithmetic against Date, to the millisecond.
        const ms = floorDiv(ns, 1_000_000n);
        expect(Date.parse(`${azure?.slice(0, 23)}Z`)).toBe(Number(ms));
        expect(toS3(azure ?? '')).toBe(s3);
      }),
      { numRuns: 2000 },
    );
  });

  it('reads an Azure time at any UTC offset as the same instant', () => {
    const day = 86_400n * NS;
    fc.assert(
      fc.property(
        fc.bigInt({ min: INT64_MIN + day, max: INT64_MAX - day }),
        fc.integer({ min: -(23 * 60 + 59), max: 23 * 60 + 59 }),
        fc.integer({ min: 0, max: 9 }),
        (exact, offsetMinutes, digits) => {
          // Drop the fraction digits the value will not carry.
          const unit = 10n ** BigInt(9 - digits);
          const ns = floorDiv(exact, unit) * unit;
          const full = azureForm(ns, offsetMinutes);
          const short =
            digits === 0
              ? full.replace(/\.\d{9}/, '')
              : full.replace(/(\.\d{9})/, (f) => f.slice(0, 1 + digits));
          expect(toS3(short)).toBe(s3Form(ns));
          expect(toAzure(toS3(short) ?? '')).toBe(azureForm(ns));
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('Constant: TRANSLATED_TOOL_METADATA', () => {
  it('lists rclone mtime', () => {
    expect(TRANSLATED_TOOL_METADATA.map(({ tool, name }) => `${tool}:${name}`)).toEqual([
      'rclone:mtime',
    ]);
  });
});
